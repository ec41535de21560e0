"""Recurrent PPO for in-context and meta-RL: `make_train(config) -> train(key)`, one jittable program.

One update = a rollout of `num_steps` steps in `env.num_envs` vectorised envs with the core in step mode (the
carry passed on, zeroed where an episode starts), then `update_epochs` passes over `num_minibatches`
minibatches of whole env sequences: the core runs in sequence mode from the carry stored at the start of the
rollout, with the same resets, so training sees exactly the inputs and memory acting saw. Losses (Schulman
et al. 2017): clipped surrogate on per-minibatch normalised GAE advantages, clipped value loss, entropy bonus;
Adam with global-norm gradient clipping and a linearly annealed learning rate. Defaults are popjaxrl's
(Lu et al. 2023): 64 envs x 1024 steps, 30 epochs, 8 minibatches, lr 5e-5, gamma 0.99, GAE lambda 1.0.

Simplification: a truncated episode (time limit) is treated as terminated, with no bootstrap from its last
observation, as popjaxrl and PureJaxRL do.

    train = jax.jit(jax.vmap(make_train(PPOConfig())))
    state, metrics = train(jax.random.split(jax.random.PRNGKey(0), 3))   # 3 seeds, metrics [3, num_updates]
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal

import chex
import jax
import jax.numpy as jnp
import optax

from ssmrl.agents.env_stack import EnvConfig, make_env
from ssmrl.rl.algorithm import Algorithm
from ssmrl.rl.heads import make_head
from ssmrl.rl.networks import ActorCritic, make_memory
from ssmrl.rl.returns import gae


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters; `core` is any `ssmrl.ssm.CORES` name or "mlp", configured by `core_kwargs`."""

    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    core: str = "s5"
    core_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    hidden: int = 256
    activation: Literal["relu", "tanh", "leaky_relu", "gelu", "silu"] = "leaky_relu"
    continuous: Literal["tanh_gaussian", "gaussian"] = "tanh_gaussian"
    total_timesteps: int = 15_000_000
    num_steps: int = 1024
    update_epochs: int = 30
    num_minibatches: int = 8
    lr: float = 5e-5
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 1.0
    clip_eps: float = 0.2
    clip_value: bool = True
    ent_coef: float = 0.0
    vf_coef: float = 1.0
    max_grad_norm: float = 0.5

    @property
    def steps_per_update(self) -> int:
        return self.env.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.steps_per_update

    def make_env(self, num_envs: int | None = None, split: Literal["train", "test"] = "train",
                 normalize: bool | None = None):
        """(vectorised env, params); `num_envs`/`normalize` override env.num_envs/env.normalize_obs."""
        env_config = self.env if normalize is None else dataclasses.replace(self.env, normalize_obs=normalize)
        return make_env(env_config, num_envs, split)

    def make_network(self, env, env_params) -> ActorCritic:
        """The actor-critic for `env`'s action space."""
        head = make_head(env.action_space(env_params), self.continuous)
        return ActorCritic(make_memory(self.core, **self.core_kwargs), head, self.hidden, self.activation)


@chex.dataclass(frozen=True)
class PPOState:
    """One seed's training state. obs `[N, D]`; reset `[N]`: obs starts an episode (the core zeroes its carry)."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array
    reset: jax.Array
    carry: Any
    key: jax.Array
    update: jax.Array
    episode_stats: dict[str, jax.Array]


@chex.dataclass(frozen=True)
class Transition:
    """One rollout step, `[T, N, ...]` when stacked. reset: obs starts an episode; done: the step ended one."""

    obs: jax.Array
    reset: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array


EPISODE_INFO = {
    "episode_return": "returned_episode_returns", "episode_length": "returned_episode_lengths",
    "win_rate": "returned_won_episode",
}
"""Logged per-episode metric -> the `info` entry (`ssmrl.envs.wrappers.LogWrapper`) holding it; win_rate only for envs
that report wins (`reports_wins`, e.g. SMAX)."""


def episode_metrics(env) -> list[str]:
    """The EPISODE_INFO metrics `env` reports."""
    return [name for name in EPISODE_INFO if name != "win_rate" or getattr(env, "reports_wins", False)]


def check_config(config: PPOConfig) -> None:
    """ValueError for settings PPO cannot run with, naming the values."""
    sizes = {"env.num_envs": config.env.num_envs, "num_steps": config.num_steps, "update_epochs": config.update_epochs,
             "num_minibatches": config.num_minibatches, "hidden": config.hidden}
    for name, value in sizes.items():  # first: the checks below divide by them
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if config.num_updates < 1:
        raise ValueError(
            f"total_timesteps={config.total_timesteps} is less than one update of num_envs x num_steps = "
            f"{config.env.num_envs} x {config.num_steps} = {config.steps_per_update} steps"
        )
    if config.env.num_envs % config.num_minibatches:
        raise ValueError(
            f"num_minibatches={config.num_minibatches} must divide env.num_envs={config.env.num_envs} "
            "(minibatches are whole env sequences)"
        )


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
    """Adam (eps 1e-5) after global-norm clipping; lr linear to 0 over all minibatch steps when annealed."""
    lr = config.lr
    if config.anneal_lr:
        lr = optax.linear_schedule(lr, 0.0, config.num_updates * config.update_epochs * config.num_minibatches)
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))


def add_time(tree):
    """A length-1 time axis in front of every leaf (observations may be dicts)."""
    return jax.tree.map(lambda x: x[None], tree)


def act(network: ActorCritic, params, carry, obs, reset, key, greedy: bool = False):
    """One step-mode call: obs `[N, D]`, reset `[N]` -> (carry, action `[N, ...]`, log_prob `[N]`, value `[N]`).

    Sampled actions, or the distribution's mode/mean when `greedy`; acting in training and evaluation both use it.
    """
    carry, dist, value = network.apply(params, carry, add_time(obs), reset[None])
    action = network.head.greedy(dist) if greedy else dist.sample(seed=key)
    return carry, action[0], dist.log_prob(action)[0], value[0]


def ppo_loss(params, network: ActorCritic, config: PPOConfig, carry, traj: Transition, advantages, targets):
    """PPO's loss on whole sequences `[T, n]` from the rollout-start carry `[n, ...]`; returns (loss, stats)."""
    _, dist, value = network.apply(params, carry, traj.obs, traj.reset)
    log_prob = dist.log_prob(traj.action)
    log_ratio = log_prob - traj.log_prob
    ratio = jnp.exp(log_ratio)
    adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    clipped_ratio = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
    policy_loss = -jnp.minimum(ratio * adv, clipped_ratio * adv).mean()
    value_error = jnp.square(value - targets)
    if config.clip_value:
        clipped_value = traj.value + jnp.clip(value - traj.value, -config.clip_eps, config.clip_eps)
        value_error = jnp.maximum(value_error, jnp.square(clipped_value - targets))
    value_loss = 0.5 * value_error.mean()
    entropy = dist.entropy().mean()
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
    stats = {
        "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
        "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
        "clip_fraction": (jnp.abs(ratio - 1.0) > config.clip_eps).mean(),
    }
    return loss, stats


def make_ppo(config: PPOConfig) -> Algorithm:
    """PPO for one seed as an `Algorithm` (init, update) for the runner."""
    check_config(config)
    env, env_params = config.make_env()
    network = config.make_network(env, env_params)
    optimizer = make_optimizer(config)
    num_envs = env.num_envs
    metric_names = episode_metrics(env)

    def init(key):
        key, k_params, k_env = jax.random.split(key, 3)
        obs, env_state = env.reset(k_env, env_params)
        carry = network.initialize_carry((num_envs,))
        reset = jnp.ones((num_envs,), bool)
        params = network.init(k_params, carry, add_time(obs), reset[None])
        return PPOState(
            params=params, opt_state=optimizer.init(params), env_state=env_state, obs=obs, reset=reset,
            carry=carry, key=key, update=jnp.zeros((), jnp.int32),
            episode_stats={name: jnp.zeros((), jnp.float32) for name in metric_names},
        )

    def rollout_step(state: PPOState, _):
        key, k_act, k_env = jax.random.split(state.key, 3)
        carry, action, log_prob, value = act(network, state.params, state.carry, state.obs, state.reset, k_act)
        with jax.named_scope("env_step"):
            obs, env_state, reward, terminated, truncated, info = env.step(
                k_env, state.env_state, network.head.env_action(action), env_params
            )
        done = jnp.logical_or(terminated, truncated)
        step = Transition(
            obs=state.obs, reset=state.reset, action=action, log_prob=log_prob, value=value, reward=reward, done=done
        )
        log = {name: info[EPISODE_INFO[name]].astype(jnp.float32) for name in metric_names}
        log["end"] = info["returned_episode"]
        return state.replace(env_state=env_state, obs=obs, reset=done, carry=carry, key=key), (step, log)

    def minibatch_step(train, batch):
        params, opt_state = train
        carry, traj, advantages, targets = batch
        grads, stats = jax.grad(ppo_loss, has_aux=True)(params, network, config, carry, traj, advantages, targets)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        stats["grad_norm"] = optax.global_norm(grads)
        return (optax.apply_updates(params, updates), opt_state), stats

    def epoch(carry_in, key, start_carry, traj, advantages, targets):
        order = jax.random.permutation(key, num_envs).reshape(config.num_minibatches, -1)
        batches = (
            jax.tree.map(lambda c: c[order], start_carry),
            jax.tree.map(lambda x: jnp.swapaxes(x[:, order], 0, 1), (traj, advantages, targets)),
        )
        return jax.lax.scan(minibatch_step, carry_in, (batches[0], *batches[1]))

    def update(state: PPOState):
        start_carry = state.carry
        with jax.named_scope("rollout"):  # the scopes name the stages in profiles (scripts/bench_ppo.py --profile)
            state, (traj, log) = jax.lax.scan(rollout_step, state, None, config.num_steps)
        with jax.named_scope("advantages"):
            _, _, last_value = network.apply(state.params, state.carry, add_time(state.obs), state.reset[None])
            advantages, targets = gae(traj.reward, traj.value, traj.done, last_value[0], config.gamma,
                                      config.gae_lambda)
        key, k_epochs = jax.random.split(state.key)
        with jax.named_scope("train"):
            (params, opt_state), stats = jax.lax.scan(
                lambda train, k: epoch(train, k, start_carry, traj, advantages, targets),
                (state.params, state.opt_state), jax.random.split(k_epochs, config.update_epochs),
            )
        ended = log["end"].sum()
        episode_stats = {  # mean over the episodes that ended in this rollout; the last value when none did
            name: jnp.where(ended > 0, (log[name] * log["end"]).sum() / jnp.maximum(ended, 1), last)
            for name, last in state.episode_stats.items()
        }
        state = state.replace(
            params=params, opt_state=opt_state, key=key, update=state.update + 1, episode_stats=episode_stats,
        )
        metrics = {name: value.mean() for name, value in stats.items()}
        metrics.update(episode_stats, episodes=ended.astype(jnp.float32))
        return state, jax.tree.map(lambda m: m.astype(jnp.float32), metrics)

    per_env_leaves = functools.cache(lambda: env_batch_leaves(config, env_params, num_envs))  # builds 2 envs: once

    def batch_axes(state: PPOState) -> PPOState:
        per_env = per_env_leaves()
        return jax.tree.map(lambda _: False, state).replace(
            env_state=jax.tree.unflatten(jax.tree.structure(state.env_state), per_env),
            obs=jax.tree.map(lambda _: True, state.obs), reset=True, carry=jax.tree.map(lambda _: True, state.carry),
        )

    return Algorithm(init=init, update=update, num_updates=config.num_updates, steps_per_update=config.steps_per_update,
                     batch_axes=batch_axes)


def env_batch_leaves(config: PPOConfig, env_params, num_envs: int) -> list[bool]:
    """Per leaf of the env state: whether its leading size follows the number of envs (one slice per env), found by
    tracing `reset` with `num_envs` and `num_envs + 1` envs; shared leaves (e.g. observation statistics) are False."""

    def shapes(n):
        env, _ = config.make_env(n)
        return jax.tree.leaves(jax.eval_shape(lambda key: env.reset(key, env_params)[1], jax.random.PRNGKey(0)))

    return [a.shape[:1] != b.shape[:1] for a, b in zip(shapes(num_envs), shapes(num_envs + 1), strict=True)]


def make_train(config: PPOConfig):
    """`train(key) -> (PPOState, metrics [num_updates])`: the whole run, jittable and vmappable over seeds."""
    return make_ppo(config).train

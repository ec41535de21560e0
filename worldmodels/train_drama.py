"""Drama's training loop (`algo: drama`): act with the policy, train the world model, train the actor-critic in
imagination, all inside one jitted `update` (replay, env states, parameters and optimiser states live in the state).

One `update` runs `env_steps_per_update` iterations; each iteration
  1. acts in the `num_envs` vectorised envs: z_t from the posterior of o_t, s_t = [z_t, h_{t-1}], a_t ~ pi(s_t)
     (uniformly random actions until the replay holds `replay.wm_warmup` steps), then h_t = f(h_{t-1}, [z_t, a_t])
     in step mode with the backbone's carry (zeroed at episode starts);
  2. writes the step to the replay (`ssmrl.worldmodels.replay`, on device);
  3. every `train_every` iterations: `train_steps` times one world-model step on `model.batch_size` DFS-sampled
     windows of `model.seq_len` steps (once the replay holds `replay.wm_warmup` env steps), then one actor-critic
     step on `behaviour.imagine_batch` trajectories imagined for `imagine_horizon` steps after DFS-sampled contexts
     of `imagine_context` real steps (once it holds `replay.behaviour_warmup`).

With the defaults (one env, train_every = train_steps = 1) that is the official code's schedule: one world-model
and one actor-critic step per env step after 1032 random steps (= 1024 imagination contexts + 8), 100k env steps
(MinAtar-100k / Atari-100k budget; the warmup counts in the budget). The warmup is a `lax.cond`, which vmap over
seeds turns into computing both branches: warmup iterations cost as much as training ones (1% of a 100k run).

Simplifications: an episode that reaches its time limit counts as not terminated but is never bootstrapped in the
real env (the world model only sees the `first` flag of the next episode); the official agent acts on the prior
prediction z^_t from a 16-frame context without the current frame, this one on the posterior of the current frame
with the carried state (DreamerV3's way).

    ssmrl train configs/drama_minatar_breakout.yaml
    ssmrl train configs/drama_minatar_breakout.yaml model.backbone=gru model.core_kwargs='{features: 512}'
    ssmrl evaluate runs/drama_minatar_breakout --episodes 32 --render
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

import ssmrl.envs as envs
from ssmrl.envs.wrappers import LogWrapper, VecEnv
from ssmrl.rl.algorithm import Algorithm
from ssmrl.worldmodels.actor_critic import Behaviour, BehaviourConfig, BehaviourState, make_behaviour
from ssmrl.worldmodels.drama import DramaModelConfig, DramaWorldModel, LossScales, world_model_loss
from ssmrl.worldmodels.imagination import imagine, start_state
from ssmrl.worldmodels.laprop import drama_optimizer
from ssmrl.worldmodels.replay import (
    Replay,
    SamplingRule,
    dfs_logits,
    num_valid_starts,
    replay_add,
    replay_init,
    sample_windows,
)

FLAGS = ("wm_trained", "ac_trained")
"""Per training step: whether the world model / the actor-critic trained (their warmups are over)."""


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """name: any `ssmrl.envs.make` name with Discrete actions and vector `[D]` or image `[H, W, C]` observations in
    [0, 1] (MinAtar: "Breakout-MinAtar", ...; POPGym: "RepeatPrevious-Easy", ...); kwargs go to `ssmrl.envs.make`."""

    name: str = "Breakout-MinAtar"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_envs: int = 1


@dataclasses.dataclass(frozen=True)
class ModelConfig(DramaModelConfig):
    """The world model (`DramaModelConfig`: its architecture) and its training; official Drama values
    (config_files/train.yaml)."""

    batch_size: int = 16
    seq_len: int = 128
    lr: float = 4e-5
    eps: float = 1e-20
    grad_clip: float = 1000.0
    warmup_steps: int = 1000
    free_bits: float = 1.0
    dyn_scale: float = 1.0
    rep_scale: float = 0.1


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    """Replay size, the random-action warmups (env steps) and DFS (`ssmrl.worldmodels.replay`)."""

    capacity: int = 100_000
    wm_warmup: int = 1032
    behaviour_warmup: int = 1032
    dfs: bool = True
    tau: float = 10.0
    imagination_tau: float = 10.0
    alpha: float = 1.0
    beta: float = 1.0


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """The `finish` hook: `episodes` envs act for context + horizon steps; the model observes the first `context`
    and imagines the next `horizon` with the real actions (GIF of env 0, MSE per imagined step)."""

    context: int = 8
    horizon: int = 16
    episodes: int = 8
    seed: int = 12345


@dataclasses.dataclass(frozen=True)
class DramaConfig:
    """Everything of a Drama run; `total_steps` env steps (all envs), `env_steps_per_update` iterations per update
    (each steps every env once)."""

    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    behaviour: BehaviourConfig = dataclasses.field(default_factory=BehaviourConfig)
    replay: ReplayConfig = dataclasses.field(default_factory=ReplayConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    total_steps: int = 100_000
    env_steps_per_update: int = 100
    train_every: int = 1
    train_steps: int = 1

    @property
    def steps_per_update(self) -> int:
        return self.env.num_envs * self.env_steps_per_update

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.steps_per_update


@chex.dataclass(frozen=True)
class DramaState:
    """One seed's state. wm_variables: the world model's flax variables (`params`, and `batch_stats` for images);
    obs `[N, *obs_shape]` (the model's float input), first `[N]` (obs starts an episode), carry: the backbone's
    acting carry, h_prev `[N, D]`: h of the previous step; iteration: env steps per env."""

    wm_variables: Any
    wm_opt: Any
    behaviour: BehaviourState
    replay: Replay
    env_state: Any
    obs: jax.Array
    first: jax.Array
    carry: Any
    h_prev: jax.Array
    key: jax.Array
    iteration: jax.Array
    episode_return: jax.Array
    episode_length: jax.Array


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a config builds: the vectorised env and its params, world model, its optimiser and loss scales,
    the actor-critic, the DFS rule, and the replay's storage of observations."""

    env: Any
    env_params: Any
    model: DramaWorldModel
    wm_optimizer: optax.GradientTransformation
    scales: LossScales
    behaviour: Behaviour
    rule: SamplingRule
    obs_shape: tuple[int, ...]

    @property
    def is_image(self) -> bool:
        return len(self.obs_shape) == 3

    def to_storage(self, obs):
        """Images in [0, 1] as uint8 (times 255, clipped), vectors as float32."""
        if self.is_image:
            return jnp.round(jnp.clip(obs, 0.0, 1.0) * 255.0).astype(jnp.uint8)
        return obs.astype(jnp.float32)

    def from_storage(self, stored):
        return stored.astype(jnp.float32) / 255.0 if self.is_image else stored


def make_env(config: EnvConfig):
    """(LogWrapper'd env vectorised over num_envs, params); ValueError for non-discrete actions or other shapes."""
    env, params = envs.make(config.name, **config.kwargs)
    if not hasattr(env.action_space(params), "n"):
        raise ValueError(f"Drama needs Discrete actions; {config.name!r} has {env.action_space(params)!r}")
    shape = tuple(env.observation_space(params).shape)
    if len(shape) not in (1, 3):
        raise ValueError(f"Drama takes vector [D] or image [H, W, C] observations; {config.name!r} has {shape}")
    return VecEnv(LogWrapper(env), config.num_envs), params


def check_config(config: DramaConfig) -> None:
    """ValueError naming settings the loop cannot run with."""
    m, b, r, n = config.model, config.behaviour, config.replay, config.env.num_envs
    for name, value in (("env.num_envs", n), ("env_steps_per_update", config.env_steps_per_update),
                        ("train_every", config.train_every), ("train_steps", config.train_steps),
                        ("model.batch_size", m.batch_size), ("model.seq_len", m.seq_len)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if config.env_steps_per_update % config.train_every:
        raise ValueError(f"train_every={config.train_every} must divide env_steps_per_update="
                         f"{config.env_steps_per_update} (an update ends after a training step)")
    if config.num_updates < 1:
        raise ValueError(f"total_steps={config.total_steps} is less than one update of env.num_envs x "
                         f"env_steps_per_update = {config.steps_per_update} steps")
    if m.seq_len < 2:
        raise ValueError(f"model.seq_len must be >= 2 (the KL pairs consecutive steps), got {m.seq_len}")
    if r.capacity * n < max(r.wm_warmup, r.behaviour_warmup) or r.capacity < m.seq_len:
        raise ValueError(f"replay.capacity={r.capacity} rows x {n} envs must hold the warmups ({r.wm_warmup}, "
                         f"{r.behaviour_warmup} steps) and one window of model.seq_len={m.seq_len} rows")
    for warmup, length, batch, what in ((r.wm_warmup, m.seq_len, m.batch_size, "model.batch_size windows of seq_len"),
                                        (r.behaviour_warmup, b.imagine_context, b.imagine_batch,
                                         "behaviour.imagine_batch contexts of imagine_context")):
        rows = -(-max(warmup, 1) // n)
        if num_valid_starts(rows, n, length) < batch:
            raise ValueError(
                f"after a warmup of {warmup} steps ({rows} rows x {n} envs) the replay holds "
                f"{num_valid_starts(rows, n, length)} distinct windows of {length} steps, fewer than {batch} "
                f"({what}); raise the warmup or lower the batch"
            )


def build(config: DramaConfig) -> Setup:
    """The env, models, optimisers and sampling rule of a config (ValueError for bad settings)."""
    check_config(config)
    env, env_params = make_env(config.env)
    m = config.model
    obs_shape = tuple(env.observation_space(env_params).shape)
    model = DramaWorldModel(obs_shape=obs_shape, num_actions=env.num_actions, config=m)
    model.initial_carry((1,))  # unknown backbone or option: ValueError now
    rule = SamplingRule(tau=config.replay.tau, imagination_tau=config.replay.imagination_tau,
                        alpha=config.replay.alpha, beta=config.replay.beta,
                        count_scale=m.batch_size / config.behaviour.imagine_batch, dfs=config.replay.dfs)
    return Setup(
        env=env, env_params=env_params, model=model,
        wm_optimizer=drama_optimizer(m.lr, m.eps, m.grad_clip, m.warmup_steps),
        scales=LossScales(free_bits=m.free_bits, dynamics=m.dyn_scale, representation=m.rep_scale),
        behaviour=make_behaviour(config.behaviour, env.num_actions, model.bins()), rule=rule, obs_shape=obs_shape,
    )


def act(setup: Setup, wm_variables, behaviour: BehaviourState, carry, h_prev, obs, first, key, random_action=None,
        greedy: bool = False):
    """One acting step in N envs: obs `[N, *obs_shape]`, first `[N]`, h_prev `[N, D]` -> (carry, h `[N, D]`,
    action int32 `[N]`), sampled (or the most likely one when `greedy`). `random_action` `[N]` bool: take a
    uniformly random action instead (warmup)."""
    model = setup.model
    k_z, k_act, k_rand = jax.random.split(key, 3)
    z = model.apply(wm_variables, obs, k_z, method=DramaWorldModel.sample_posterior)
    feat = jnp.concatenate([z, jnp.where(first[:, None], 0.0, h_prev)], -1)
    dist = setup.behaviour.policy(behaviour.params, behaviour.moments, feat)
    action = (dist.mode() if greedy else dist.sample(seed=k_act)).astype(jnp.int32)
    if random_action is not None:
        uniform = jax.random.randint(k_rand, action.shape, 0, model.num_actions, jnp.int32)
        action = jnp.where(random_action, uniform, action)
    carry, h = model.apply(wm_variables, carry, z[None], action[None], first[None], method=DramaWorldModel.sequence)
    return carry, h[0], action


def train_world_model(setup: Setup, config: DramaConfig, wm_variables, wm_opt, replay: Replay, key):
    """One world-model step on DFS-sampled windows, BatchNorm on the batch's statistics (its running averages
    updated); returns (variables, opt state, replay with counts, terms)."""
    m = config.model
    k_sample, k_loss = jax.random.split(key)
    logits = dfs_logits(replay, m.seq_len, False, setup.rule)
    replay, batch = sample_windows(replay, k_sample, logits, m.batch_size, m.seq_len, False)
    obs = setup.from_storage(batch["obs"])
    model = setup.model.clone(training=True)

    def loss_fn(params):
        carry = model.initial_carry((m.batch_size,))
        (_, out), stats = model.apply({**wm_variables, "params": params}, carry, obs, batch["action"], batch["first"],
                                      k_loss, method=DramaWorldModel.observe, mutable=["batch_stats"])
        loss, terms = world_model_loss(out, obs, batch["reward"], batch["terminal"], batch["first"], model.bins(),
                                       setup.scales)
        return loss, (terms, stats)

    params = wm_variables["params"]
    grads, (terms, stats) = jax.grad(loss_fn, has_aux=True)(params)
    updates, wm_opt = setup.wm_optimizer.update(grads, wm_opt, params)
    terms["wm_grad_norm"] = optax.global_norm(grads).astype(jnp.float32)
    return {**wm_variables, **stats, "params": optax.apply_updates(params, updates)}, wm_opt, replay, terms


def imagine_batch(setup: Setup, config: DramaConfig, wm_variables, behaviour: BehaviourState, replay: Replay, key):
    """DFS-sampled contexts, then imagined rollouts with the current policy: (replay with counts, trajectory)."""
    b = config.behaviour
    k_sample, k_start, k_imagine = jax.random.split(key, 3)
    logits = dfs_logits(replay, b.imagine_context, True, setup.rule)
    replay, context = sample_windows(replay, k_sample, logits, b.imagine_batch, b.imagine_context, True)
    context = dict(context, obs=setup.from_storage(context["obs"]))
    carry, z0, h0 = start_state(setup.model, wm_variables, context, k_start)
    policy = lambda feat, k: setup.behaviour.policy(behaviour.params, behaviour.moments, feat).sample(seed=k)
    return replay, imagine(setup.model, wm_variables, policy, carry, z0, h0, b.imagine_horizon, k_imagine)


def metric_names(setup: Setup, config: DramaConfig) -> tuple[list[str], list[str]]:
    """(world-model terms, actor-critic terms) one training step reports, found by tracing (nothing computed)."""
    state = jax.eval_shape(make_init(setup, config), jax.ShapeDtypeStruct((2,), jnp.uint32))
    _, _, _, wm_terms = jax.eval_shape(
        lambda s: train_world_model(setup, config, s.wm_variables, s.wm_opt, s.replay, s.key), state)
    traj = jax.eval_shape(
        lambda s: imagine_batch(setup, config, s.wm_variables, s.behaviour, s.replay, s.key)[1], state)
    ac_terms = jax.eval_shape(lambda s, t: setup.behaviour.update(s.behaviour, t)[1], state, traj)
    return sorted(wm_terms), sorted(ac_terms)


def make_init(setup: Setup, config: DramaConfig):
    """init(key uint32 [2]) -> DramaState: env reset, parameters, optimisers, an empty replay."""
    n, model = config.env.num_envs, setup.model

    def init(key):
        key, k_env, k_wm, k_z, k_ac = jax.random.split(key, 5)
        obs, env_state = setup.env.reset(k_env, setup.env_params)
        obs = setup.from_storage(setup.to_storage(obs))
        first = jnp.ones((n,), bool)
        carry = model.initial_carry((n,))
        actions = jnp.zeros((1, n), jnp.int32)
        wm_variables = model.init(k_wm, carry, obs[None], actions, first[None], k_z, method=DramaWorldModel.observe)
        _, out = jax.eval_shape(lambda p: model.apply(p, carry, obs[None], actions, first[None], k_z,
                                                      method=DramaWorldModel.observe), wm_variables)
        h_prev = jnp.zeros(out["h"].shape[1:], jnp.float32)
        feat_dim = out["z"].shape[-1] + h_prev.shape[-1]
        stored = setup.to_storage(obs)
        return DramaState(
            wm_variables=wm_variables, wm_opt=setup.wm_optimizer.init(wm_variables["params"]),
            behaviour=setup.behaviour.init(k_ac, feat_dim),
            replay=replay_init(config.replay.capacity, n, setup.obs_shape, stored.dtype), env_state=env_state,
            obs=obs, first=first, carry=carry, h_prev=h_prev, key=key, iteration=jnp.zeros((), jnp.int32),
            episode_return=jnp.zeros((), jnp.float32), episode_length=jnp.zeros((), jnp.float32),
        )

    return init


def make_drama(config: DramaConfig) -> Algorithm:
    """Drama for one seed as an `Algorithm` for the runner (see the module docstring)."""
    setup = build(config)
    n, r = config.env.num_envs, config.replay
    init = make_init(setup, config)
    wm_names, ac_names = metric_names(setup, config)

    def train_step(state: DramaState, key):
        """One world-model step (when warm) and one actor-critic step (when warm); terms zero where skipped. The
        branches return only what they change (parameters, optimiser states, DFS counts): under vmap a `cond` is
        a select of both branches' outputs, which must not copy the replay's observations."""
        k_wm, k_img = jax.random.split(key)
        steps = state.replay.size * n
        wm_ready, ac_ready = steps >= r.wm_warmup, steps >= r.behaviour_warmup

        def world_model(s):
            variables, opt, replay, terms = train_world_model(setup, config, s.wm_variables, s.wm_opt, s.replay, k_wm)
            return (variables, opt, replay.wm_count), terms

        def behaviour(s):
            replay, traj = imagine_batch(setup, config, s.wm_variables, s.behaviour, s.replay, k_img)
            ac, terms = setup.behaviour.update(s.behaviour, traj)
            return (ac, replay.img_count), terms

        zeros = lambda names: {name: jnp.zeros((), jnp.float32) for name in names}
        (variables, opt, wm_count), wm_terms = jax.lax.cond(
            wm_ready, world_model, lambda s: ((s.wm_variables, s.wm_opt, s.replay.wm_count), zeros(wm_names)), state)
        state = state.replace(wm_variables=variables, wm_opt=opt, replay=state.replay.replace(wm_count=wm_count))
        (ac, img_count), ac_terms = jax.lax.cond(
            ac_ready, behaviour, lambda s: ((s.behaviour, s.replay.img_count), zeros(ac_names)), state)
        state = state.replace(behaviour=ac, replay=state.replay.replace(img_count=img_count))
        flags = dict(zip(FLAGS, (wm_ready.astype(jnp.float32), ac_ready.astype(jnp.float32)), strict=True))
        return state, {**wm_terms, **ac_terms, **flags}

    def env_step(state: DramaState, _):
        key, k_act, k_env = jax.random.split(state.key, 3)
        warm = state.replay.size * n >= r.wm_warmup
        carry, h, action = act(setup, state.wm_variables, state.behaviour, state.carry, state.h_prev, state.obs,
                               state.first, k_act, random_action=jnp.broadcast_to(~warm, state.first.shape))
        obs, env_state, reward, terminated, truncated, info = setup.env.step(
            k_env, state.env_state, action, setup.env_params)
        replay = replay_add(state.replay, setup.to_storage(state.obs), action, reward, terminated, state.first)
        state = state.replace(
            replay=replay, env_state=env_state, obs=setup.from_storage(setup.to_storage(obs)),
            first=terminated | truncated, carry=carry, h_prev=h, key=key, iteration=state.iteration + 1,
        )
        episodes = {"end": info["returned_episode"], "return": info["returned_episode_returns"],
                    "length": info["returned_episode_lengths"].astype(jnp.float32)}
        return state, episodes

    def block(state: DramaState, _):
        """`train_every` env steps, then `train_steps` training steps (no branch: vmap over seeds keeps it cheap)."""
        state, episodes = jax.lax.scan(env_step, state, None, config.train_every)
        key, k_train = jax.random.split(state.key)
        state, terms = jax.lax.scan(train_step, state.replace(key=key), jax.random.split(k_train, config.train_steps))
        return state, (terms, episodes)

    def update(state: DramaState):
        state, (terms, episodes) = jax.lax.scan(block, state, None, config.env_steps_per_update // config.train_every)
        ended = episodes["end"].sum()
        mean_of_ended = lambda x, last: jnp.where(ended > 0, (x * episodes["end"]).sum() / jnp.maximum(ended, 1), last)
        state = state.replace(episode_return=mean_of_ended(episodes["return"], state.episode_return),
                              episode_length=mean_of_ended(episodes["length"], state.episode_length))
        # training terms: means over the steps that trained (0 before the warmup); flags: fraction of steps trained
        wm_flag, ac_flag = (terms[flag] for flag in FLAGS)
        metrics = {name: terms[name].mean() for name in FLAGS}
        for names, flag in ((wm_names, wm_flag), (ac_names, ac_flag)):
            metrics.update({name: (terms[name] * flag).sum() / jnp.maximum(flag.sum(), 1.0) for name in names})
        metrics.update(episode_return=state.episode_return, episode_length=state.episode_length,
                       episodes=ended.astype(jnp.float32), replay_steps=(state.replay.size * n).astype(jnp.float32))
        return state, jax.tree.map(lambda x: x.astype(jnp.float32), metrics)

    return Algorithm(init=init, update=update, num_updates=config.num_updates, steps_per_update=config.steps_per_update)

"""End-to-end PPO throughput: ssmrl PPO with each core against a reference GRU PPO written the common way.

    python scripts/bench_ppo.py                                   # GPU preset: 1024 and 4096 envs
    python scripts/bench_ppo.py --envs CartPole-v1 --num-envs 64 --cores s5 mlp --updates 2   # CPU smoke run

The reference ("ref-gru") is what single-file recurrent PPO scripts do: a flax `GRUCell` stepped by `lax.scan`
(the carry zeroed where an episode starts) in the rollout and again over the stored rollout in training, with the
same env, PPO settings, widths and losses as ssmrl's PPO. Per row: env steps/s of the steady state (`--updates`
updates, compile excluded) and the compile time of the first update (trace + XLA compile + one run). Prints a
markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import time

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from agents.env_stack import EnvConfig
from agents.ppo import PPOConfig, make_ppo
from agents.returns import gae

CORE_KWARGS = {
    "s5": {"d_model": 128, "state_size": 128, "n_layers": 2},
    "lru": {"d_model": 128, "state_size": 128, "n_layers": 2},
    "s4d": {"d_model": 128, "state_size": 64, "n_layers": 2},
    "mamba": {"d_model": 128, "n_layers": 2},
    "gru": {"features": 128},
    "lstm": {"features": 128},
    "mlp": {"features": 128},
}
PRESETS = {"gpu": dict(num_envs=[1024, 4096], updates=5), "cpu": dict(num_envs=[64], updates=2)}


def ppo_config(env: str, core: str, num_envs: int) -> PPOConfig:
    """The benchmarked PPO settings: 128-step rollouts, 4 epochs of 4 minibatches, width 128."""
    core_kwargs = {"features": 128} if core == "ref-gru" else CORE_KWARGS[core]
    return PPOConfig(env=EnvConfig(name=env, num_envs=num_envs), core="gru" if core == "ref-gru" else core,
                     core_kwargs=core_kwargs, hidden=128, num_steps=128, update_epochs=4, num_minibatches=4,
                     lr=3e-4, gae_lambda=0.95, total_timesteps=num_envs * 128)


class ResetGRUStep(nn.Module):
    """One GRUCell step with the carry zeroed where an episode starts."""

    hidden: int

    @nn.compact
    def __call__(self, carry, inputs):
        x_t, reset_t = inputs
        return nn.GRUCell(self.hidden, name="cell")(jnp.where(reset_t[:, None], 0.0, carry), x_t)


class ReferenceGRU(nn.Module):
    """(carry `[B, H]`, obs `[T, B, D]`, resets `[T, B]`) -> (carry, logits `[T, B, n]`, value `[T, B]`)."""

    num_actions: int
    hidden: int = 128

    @nn.compact
    def __call__(self, carry, obs, resets):
        x = nn.leaky_relu(nn.Dense(self.hidden)(obs))
        scan = nn.scan(ResetGRUStep, variable_broadcast="params", split_rngs={"params": False})
        carry, y = scan(self.hidden)(carry, (x, resets))
        actor = nn.leaky_relu(nn.Dense(self.hidden)(y))
        critic = nn.leaky_relu(nn.Dense(self.hidden)(y))
        return carry, nn.Dense(self.num_actions)(actor), nn.Dense(1)(critic)[..., 0]


def reference_ppo(config: PPOConfig):
    """(init(key) -> state, update(state) -> (state, loss)) of the reference GRU PPO for `config`."""
    env, env_params = config.make_env()
    num_envs, hidden = env.num_envs, config.hidden
    net = ReferenceGRU(env.action_space(env_params).n, hidden)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr, eps=1e-5))

    def init(key):
        k_net, k_env, key = jax.random.split(key, 3)
        obs, env_state = env.reset(k_env, env_params)
        carry, reset = jnp.zeros((num_envs, hidden)), jnp.ones((num_envs,), bool)
        params = net.init(k_net, carry, obs[None], reset[None])
        return params, tx.init(params), env_state, obs, reset, carry, key

    def loss_fn(params, carry, obs, resets, actions, old_logp, old_values, adv, targets):
        _, logits, values = net.apply(params, carry, obs, resets)
        dist = distrax.Categorical(logits=logits)
        ratio = jnp.exp(dist.log_prob(actions) - old_logp)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        clip = jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps)
        v_clip = old_values + jnp.clip(values - old_values, -config.clip_eps, config.clip_eps)
        v_loss = 0.5 * jnp.maximum((values - targets) ** 2, (v_clip - targets) ** 2).mean()
        return -jnp.minimum(ratio * adv, clip * adv).mean() + config.vf_coef * v_loss

    def update(state):
        params, opt_state, env_state, obs, reset, carry, key = state
        start_carry = carry

        def step(c, _):
            env_state, obs, reset, carry, key = c
            key, k_act, k_env = jax.random.split(key, 3)
            carry, logits, value = net.apply(params, carry, obs[None], reset[None])
            dist = distrax.Categorical(logits=logits[0])
            action = dist.sample(seed=k_act)
            obs2, env_state, reward, term, trunc, _ = env.step(k_env, env_state, action, env_params)
            done = term | trunc
            return (env_state, obs2, done, carry, key), (obs, reset, action, dist.log_prob(action), value[0], reward,
                                                          done)

        (env_state, obs, reset, carry, key), traj = jax.lax.scan(step, (env_state, obs, reset, carry, key), None,
                                                                 config.num_steps)
        t_obs, t_reset, t_act, t_logp, t_val, t_rew, t_done = traj
        _, _, last = net.apply(params, carry, obs[None], reset[None])
        adv, targets = gae(t_rew, t_val, t_done, last[0], config.gamma, config.gae_lambda)

        def epoch(c, k):
            order = jax.random.permutation(k, num_envs).reshape(config.num_minibatches, -1)

            def minibatch(c, idx):
                params, opt_state = c
                batch = jax.tree.map(lambda x: x[:, idx], (t_obs, t_reset, t_act, t_logp, t_val, adv, targets))
                loss, grads = jax.value_and_grad(loss_fn)(params, start_carry[idx], *batch)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            return jax.lax.scan(minibatch, c, order)

        key, k_ep = jax.random.split(key)
        (params, opt_state), losses = jax.lax.scan(epoch, (params, opt_state),
                                                   jax.random.split(k_ep, config.update_epochs))
        return (params, opt_state, env_state, obs, reset, carry, key), losses.mean()

    return init, update


def measure(init, update, updates: int, steps_per_update: int) -> tuple[float, float]:
    """(steady env steps/s over `updates` updates, seconds of the first update including compile)."""
    state = jax.jit(init)(jax.random.PRNGKey(0))
    update = jax.jit(update)
    start = time.perf_counter()
    state, out = update(state)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(updates):
        state, out = update(state)
    jax.block_until_ready(out)
    return updates * steps_per_update / (time.perf_counter() - start), compile_s


def main() -> None:
    backend = jax.default_backend()
    preset = PRESETS["cpu" if backend == "cpu" else "gpu"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["RepeatPrevious-Easy", "CartPole-v1"])
    parser.add_argument("--cores", nargs="+", default=["ref-gru", *CORE_KWARGS],
                        choices=["ref-gru", *CORE_KWARGS])
    parser.add_argument("--num-envs", nargs="+", type=int, default=preset["num_envs"])
    parser.add_argument("--updates", type=int, default=preset["updates"], help="timed updates after the first")
    args = parser.parse_args()
    print(f"# PPO end to end, {jax.devices()[0].device_kind}, jax {jax.__version__}, "
          f"{datetime.date.today().isoformat()}; 128 steps x 4 epochs x 4 minibatches, width 128")
    print("| env | num_envs | core | env steps/s | first update s (compile) |\n|---|---:|---|---:|---:|", flush=True)
    for env in args.envs:
        for num_envs in args.num_envs:
            for core in args.cores:
                config = ppo_config(env, core, num_envs)
                if core == "ref-gru":
                    init, update = reference_ppo(config)
                else:
                    algorithm = make_ppo(config)
                    init, update = algorithm.init, algorithm.update
                try:
                    sps, compile_s = measure(init, update, args.updates, config.steps_per_update)
                    print(f"| {env} | {num_envs} | {core} | {sps:,.0f} | {compile_s:.1f} |", flush=True)
                except Exception as error:  # a failed row (e.g. out of memory) must not end the table
                    print(f"| {env} | {num_envs} | {core} | {type(error).__name__} | |", flush=True)


if __name__ == "__main__":
    main()

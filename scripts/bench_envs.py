"""Env-steps per second of ``envs.make`` environments under a uniformly random policy.

For every (env, num_envs) pair, ``--steps`` steps of ``num_envs`` vmapped envs (actions sampled from
the action space, auto-reset inside ``step``) run in one jitted ``lax.scan``. Compilation and one
warm-up call are excluded from the timing; steps/s = num_envs * steps / seconds of the timed call.
Prints a markdown table.

    python scripts/bench_envs.py                     # default selection at 1, 256, 4096 envs
    python scripts/bench_envs.py --envs CartPole-v1,brax/ant --num-envs 1,1024
    python scripts/bench_envs.py --quick             # a tiny smoke run
"""

import argparse
import time

import jax

import ssmrl.envs as envs
from ssmrl.envs.jaxmarl_adapter import MultiAgentAdapter

DEFAULT_EXTRA = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "Breakout-MinAtar", "brax/ant",
                 "jaxmarl/MPE_simple_spread_v3")
QUICK_ENVS = ("RepeatPrevious-Easy", "CartPole-v1", "jaxmarl/MPE_simple_v3")


def default_envs() -> list[str]:
    """All POPGym and state-tracking envs at Easy, a few gymnax envs, one brax and one jaxmarl env."""
    from ssmrl.envs.popgym.suite import POPGYM_ENVS
    from ssmrl.envs.state_tracking.suite import STATE_TRACKING_ENVS

    return [name for name in (*POPGYM_ENVS, *STATE_TRACKING_ENVS) if name.endswith("-Easy")] + list(DEFAULT_EXTRA)


def sample_actions(env, params, key: jax.Array, num_envs: int):
    """Uniform random actions `[num_envs, ...]` (a dict of them for multi-agent envs)."""
    keys = jax.random.split(key, num_envs)
    if isinstance(env, MultiAgentAdapter):
        return {
            agent: jax.vmap(env.action_space(params, agent).sample)(jax.vmap(jax.random.fold_in, (0, None))(keys, i))
            for i, agent in enumerate(env.agents)
        }
    return jax.vmap(env.action_space(params).sample)(keys)


def build(env, params, num_envs: int, num_steps: int):
    """``(reset, rollout)``: jitted ``key -> state`` and ``(state, key) -> (state, summed rewards)``."""

    def reset(key):
        return jax.vmap(env.reset, (0, None))(jax.random.split(key, num_envs), params)[1]

    def rollout(state, key):
        def body(carry, key):
            state, total = carry
            key_act, key_step = jax.random.split(key)
            out = jax.vmap(env.step, (0, 0, 0, None))(
                jax.random.split(key_step, num_envs), state, sample_actions(env, params, key_act, num_envs), params
            )
            reward = sum(jax.tree.leaves(out[2]))  # per-agent dicts summed; keeps the step's outputs live
            return (out[1], total + reward.sum()), None

        return jax.lax.scan(body, (state, 0.0), jax.random.split(key, num_steps))[0]

    return jax.jit(reset), jax.jit(rollout)


def steps_per_second(name: str, num_envs: int, num_steps: int, seed: int) -> float:
    env, params = envs.make(name)
    reset, rollout = build(env, params, num_envs, num_steps)
    key_reset, key_warm, key_run = jax.random.split(jax.random.key(seed), 3)
    state = jax.block_until_ready(reset(key_reset))
    compiled = rollout.lower(state, key_run).compile()
    state = jax.block_until_ready(compiled(state, key_warm))[0]
    start = time.perf_counter()
    jax.block_until_ready(compiled(state, key_run))
    return num_envs * num_steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default="default", help="comma-separated env names, or 'default'")
    parser.add_argument("--num-envs", default="1,256,4096", help="comma-separated parallel env counts")
    parser.add_argument("--steps", type=int, default=1000, help="steps per env in the timed scan")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"tiny run: {', '.join(QUICK_ENVS)}; 1, 8 envs; 32 steps")
    args = parser.parse_args()
    if args.quick:
        names, counts, num_steps = list(QUICK_ENVS), [1, 8], 32
    else:
        names = default_envs() if args.envs == "default" else [n.strip() for n in args.envs.split(",") if n.strip()]
        counts, num_steps = [int(n) for n in args.num_envs.split(",")], args.steps
    if num_steps < 1 or any(n < 1 for n in counts):
        raise ValueError(f"--steps and --num-envs must be >= 1, got {num_steps} and {counts}")
    backend, device = jax.default_backend(), jax.devices()[0].device_kind
    print("| env | num_envs | steps/s | backend | device |")
    print("|---|---:|---:|---|---|")
    for name in names:
        for num_envs in counts:
            rate = steps_per_second(name, num_envs, num_steps, args.seed)
            print(f"| {name} | {num_envs} | {rate:,.0f} | {backend} | {device} |", flush=True)


if __name__ == "__main__":
    main()

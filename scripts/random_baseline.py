"""Return of a uniformly random policy on `ssmrl.envs.make` envs: the baseline row of a results table.

For each env and seed, `--episodes` envs run in parallel from independent resets with actions sampled uniformly
from the action space (`bench_envs.sample_actions`), each until its first episode ends (env defaults, time limits
included); the return of that episode is recorded. Prints a markdown table (mean +- std over all episodes, and the
per-seed means) and appends one JSON line per env to `--jsonl` (device, date, jax version, command, seeds).

    python scripts/random_baseline.py --envs Breakout-MinAtar Asterix-MinAtar --seeds 3 --episodes 100 \
        --jsonl docs/results/drama_minatar_random.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import ssmrl.envs as envs
from bench_envs import sample_actions
from ssmrl.envs.jaxmarl_adapter import MultiAgentAdapter


def first_episode_returns(name: str, num_episodes: int, key: jax.Array, max_steps: int) -> np.ndarray:
    """Returns `[num_episodes]` of the first episode of each of `num_episodes` envs under uniform random actions;
    ValueError naming `max_steps` if an episode had not ended by then, or the env if it is multi-agent."""
    env, params = envs.make(name)
    if isinstance(env, MultiAgentAdapter):
        raise ValueError(f"random_baseline takes single-agent envs; {name!r} is multi-agent")

    def run(key):
        key_reset, key = jax.random.split(key)
        _, state = jax.vmap(env.reset, (0, None))(jax.random.split(key_reset, num_episodes), params)
        zeros = jnp.zeros(num_episodes)

        def body(loop):
            state, returns, running, steps, key = loop
            key, key_act, key_step = jax.random.split(key, 3)
            action = sample_actions(env, params, key_act, num_episodes)
            _, state, reward, terminated, truncated, _ = jax.vmap(env.step, (0, 0, 0, None))(
                jax.random.split(key_step, num_episodes), state, action, params)
            returns = returns + jnp.where(running, reward, 0.0)
            return state, returns, running & ~(terminated | truncated), steps + 1, key

        loop = (state, zeros, jnp.ones(num_episodes, bool), jnp.int32(0), key)
        _, returns, running, _, _ = jax.lax.while_loop(lambda s: s[2].any() & (s[3] < max_steps), body, loop)
        return returns, running

    returns, running = jax.device_get(jax.jit(run)(key))
    if running.any():
        raise ValueError(f"{int(running.sum())} of {num_episodes} {name} episodes had not ended after "
                         f"max_steps={max_steps}; raise --max-steps")
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", required=True, help="`ssmrl.envs.make` names (single-agent)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=100, help="episodes (parallel envs) per seed")
    parser.add_argument("--max-steps", type=int, default=100_000)
    parser.add_argument("--jsonl", type=Path, default=None, help="append one JSON line per env here")
    args = parser.parse_args()
    for option in ("seeds", "episodes", "max_steps"):
        if getattr(args, option) < 1:
            parser.error(f"--{option.replace('_', '-')} must be >= 1, got {getattr(args, option)}")
    print("| env | random return (mean +- std over episodes) | per-seed means |")
    print("|---|---:|---|")
    for name in args.envs:
        per_seed = [first_episode_returns(name, args.episodes, jax.random.key(seed), args.max_steps)
                    for seed in range(args.seeds)]
        returns = np.concatenate(per_seed)
        means = [float(r.mean()) for r in per_seed]
        print(f"| {name} | {returns.mean():.3f} +- {returns.std():.3f} | {', '.join(f'{m:.3f}' for m in means)} |")
        if args.jsonl:
            row = dict(env=name, policy="uniform random", mean=float(returns.mean()), std=float(returns.std()),
                       per_seed_mean=means, episodes_per_seed=args.episodes, seeds=list(range(args.seeds)),
                       device=jax.devices()[0].device_kind, date=datetime.date.today().isoformat(),
                       jax=jax.__version__, command="python " + " ".join(sys.argv))
            args.jsonl.parent.mkdir(parents=True, exist_ok=True)
            with open(args.jsonl, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

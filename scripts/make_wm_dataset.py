"""Write a trajectory dataset of a memory world-model env with its data policy, reproducibly from a seed.

    python scripts/make_wm_dataset.py memory_wm/FourRooms data/four_rooms --episodes 64 --seed 0 [--steps N]

Writes `<out>.npz` (obs uint8 [N, T, H, W, C], actions, rewards, dones, resets) and `<out>.json` (env, kwargs,
seed, policy); load them with `ssmrl.worldmodels.data.load_dataset`. Episodes are collected in chunks of
`--chunk` so memory stays bounded; the same seed and arguments give the same files.
"""

from __future__ import annotations

import argparse
import functools
import json

import jax
import numpy as np

import ssmrl.envs as envs
from ssmrl.worldmodels.data import FIELDS, collect, save_dataset


@functools.cache
def collector(env_name: str, env_kwargs_json: str, steps: int):
    """(env, jitted `(key, n) -> collect(...)` of `steps` steps (0: the episode length), steps), built once per
    env, kwargs (as JSON) and length, so repeated datasets of one env compile once."""
    env, params = envs.make(env_name, **json.loads(env_kwargs_json))
    steps = steps or int(params.max_steps_in_episode)
    return env, jax.jit(lambda key, n: collect(env, params, key, n, steps), static_argnums=1), steps


def make_dataset(env_name: str, out: str, episodes: int, seed: int, steps: int = 0, chunk: int = 16,
                 env_kwargs: dict | None = None):
    """Collect `episodes` episodes (`steps` per episode, 0: the env's episode length) and save them."""
    if episodes < 1 or chunk < 1:
        raise ValueError(f"episodes and chunk must be >= 1, got episodes={episodes}, chunk={chunk}")
    env_kwargs = dict(env_kwargs or {})
    env, run, steps = collector(env_name, json.dumps(env_kwargs, sort_keys=True), steps)
    parts, key = [], jax.random.PRNGKey(seed)
    for start in range(0, episodes, chunk):
        key, sub = jax.random.split(key)
        parts.append(jax.device_get(run(sub, min(chunk, episodes - start))))
    data = {k: np.concatenate([p[k] for p in parts], axis=1) for k in FIELDS}
    meta = dict(env=env_name, env_kwargs=env_kwargs, seed=seed, episodes=episodes, steps=steps, chunk=chunk,
                policy=f"{type(env).__name__}.data_policy")
    return save_dataset(out, data, meta)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("env", help="registered env name, e.g. memory_wm/FourRooms")
    parser.add_argument("out", help="output path without suffix")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--steps", type=int, default=0, help="steps per episode (0: the env's episode length)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk", type=int, default=16, help="episodes collected per jitted call")
    parser.add_argument("--env-kwargs", default="{}", help='JSON constructor overrides, e.g. \'{"image_size": 32}\'')
    args = parser.parse_args(argv)
    npz, sidecar = make_dataset(args.env, args.out, args.episodes, args.seed, args.steps, args.chunk,
                                json.loads(args.env_kwargs))
    print(f"wrote {npz} and {sidecar}")


if __name__ == "__main__":
    main()

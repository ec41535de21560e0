"""Trajectory data for world models: collect with an env's data policy, convert to model inputs, save and load.

Trajectories use gym's convention, per time step t (arrays time-major `[T, B, ...]` in memory, batch-major
`[N, T, ...]` on disk): obs[t] (the env's [0, 1] float image stored as uint8, times 255), actions[t] (taken
after seeing obs[t]), rewards[t] and dones[t] (of that action's transition), resets[t] (obs[t] starts an
episode). `model_inputs` turns them into the
world model's arrival convention (the previous action and the reward that led to obs[t]).

Files: `<path>.npz` with obs uint8 [N, T, H, W, C], actions int32 [N, T], rewards float32 [N, T], dones and
resets bool [N, T], plus a JSON sidecar `<path>.json` (env name and kwargs, seed, policy, shapes).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

FIELDS = ("obs", "actions", "rewards", "dones", "resets")


def collect(env, params, key, batch: int, steps: int) -> dict[str, jax.Array]:
    """Roll `batch` fresh episodes of `env` for `steps` steps with `env.data_policy` (auto-reset at episode
    ends). Returns the FIELDS, time-major `[steps, batch, ...]`. Pure and jittable (env static)."""
    k_reset, k_roll = jax.random.split(key)
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(k_reset, batch), params)

    def body(carry, k):
        obs, state, reset = carry
        k_act, k_step = jax.random.split(k)
        action = jax.vmap(env.data_policy, (0, 0, None))(jax.random.split(k_act, batch), state, params)
        next_obs, state, reward, term, trunc, _ = jax.vmap(env.step, (0, 0, 0, None))(
            jax.random.split(k_step, batch), state, action, params
        )
        done = term | trunc
        record = dict(obs=jnp.round(obs * 255.0).astype(jnp.uint8), actions=action.astype(jnp.int32),
                      rewards=reward.astype(jnp.float32), dones=done, resets=reset)
        return (next_obs, state, done), record

    first = (obs, state, jnp.ones(batch, bool))
    return jax.lax.scan(body, first, jax.random.split(k_roll, steps))[1]


def model_inputs(data: dict, num_actions: int) -> dict[str, jax.Array]:
    """Time-major trajectories -> world-model inputs: obs float `[T, B, ...]` in [-0.5, 0.5], prev_actions one-hot
    `[T, B, A]` (zero at episode starts and t = 0), resets `[T, B]` (True at t = 0), rewards `[T, B]` (reward that
    led to obs[t], 0 at episode starts), continues `[T, B]` (0 where the action from obs[t] ends the episode)."""
    resets = data["resets"].at[0].set(True)
    fresh = resets.astype(jnp.float32)
    shift = lambda x: jnp.concatenate([jnp.zeros_like(x[:1]), x[:-1]], 0)
    prev_actions = jax.nn.one_hot(shift(data["actions"]), num_actions) * (1.0 - fresh[..., None])
    return dict(
        obs=data["obs"].astype(jnp.float32) / 255.0 - 0.5, prev_actions=prev_actions, resets=resets,
        rewards=shift(data["rewards"]) * (1.0 - fresh), continues=1.0 - data["dones"].astype(jnp.float32),
    )


def save_dataset(path: str | Path, data: dict, meta: dict) -> tuple[Path, Path]:
    """Write time-major trajectories as batch-major `<path>.npz` and `meta` (+ shapes) as `<path>.json`."""
    path = Path(path)
    missing = sorted(set(FIELDS) - set(data))
    if missing:
        raise KeyError(f"trajectories lack {missing}; need {list(FIELDS)}")
    arrays = {k: np.swapaxes(np.asarray(data[k]), 0, 1) for k in FIELDS}
    path.parent.mkdir(parents=True, exist_ok=True)
    npz, sidecar = path.with_suffix(".npz"), path.with_suffix(".json")
    np.savez_compressed(npz, **arrays)
    shapes = {k: list(v.shape) for k, v in arrays.items()}
    sidecar.write_text(json.dumps({**meta, "shapes": shapes}, indent=2, sort_keys=True))
    return npz, sidecar


def load_dataset(path: str | Path) -> tuple[dict[str, np.ndarray], dict]:
    """(batch-major arrays `[N, T, ...]` of FIELDS, metadata) from `<path>.npz` and `<path>.json`."""
    path = Path(path)
    npz, sidecar = path.with_suffix(".npz"), path.with_suffix(".json")
    for f in (npz, sidecar):
        if not f.is_file():
            raise FileNotFoundError(f"dataset file {str(f)!r} does not exist")
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    missing = sorted(set(FIELDS) - set(arrays))
    if missing:
        raise KeyError(f"{npz} lacks {missing}; need {list(FIELDS)}")
    return arrays, json.loads(sidecar.read_text())

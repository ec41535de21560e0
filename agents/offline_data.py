"""Offline RL datasets: D4RL-style files, episode boundaries, returns-to-go, and context windows sampled on device.

File format (`.npz`, written by `write_dataset`, made by `scripts/make_dataset.py`): D4RL's flat keys, one row per
env step in episode order (episodes contiguous),

  observations `[N, S]` float32, actions `[N, A]` float32 (what the env received), rewards `[N]` float32,
  terminals `[N]` bool (the step ended the episode in a terminal state), timeouts `[N]` bool (the episode was cut:
  time limit, or the end of a recorded stream),

plus derived keys: returns_to_go `[N]` (undiscounted sum of the episode's rewards from that step on), timesteps
`[N]` int32 (step index within the episode) and `metadata`, a JSON string with at least `env`, `env_kwargs`,
`kind` (one of `DATASET_KINDS`), `ref_min_score` and `ref_max_score` (the random and expert reference returns of
D4RL's normalised score). An episode ends at a step with `terminals | timeouts`; the last row always ends one.

`load_dataset` reads these files and also D4RL `.hdf5` files (flat keys at the root: observations, actions,
rewards, terminals, timeouts) and Minari `.hdf5` files (one group per episode, `episode_<i>` with observations
`[T + 1, S]`, actions, rewards, terminations, truncations `[T]`); hdf5 needs `h5py`. Such files carry no reference
returns: give them in the trainer's config (`dataset.ref_min_score`, `dataset.ref_max_score`).

On device, `prepare` turns the arrays into `OfflineData` (normalised observations, scaled returns-to-go) and
`sample_windows` draws Decision-Transformer context windows: a start step uniform over all N steps (the same as
DT's "trajectory with probability proportional to its length, then a uniform start in it") and the next K steps of
its episode, right-padded with zeros and masked where the episode ends first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
DATASET_KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
FORMAT_VERSION = 1


def episode_ends(terminals, timeouts) -> np.ndarray:
    """bool `[N]`: the step ends an episode (terminal or timeout; the last step always does)."""
    done = np.logical_or(np.asarray(terminals, bool), np.asarray(timeouts, bool))
    if done.size:
        done[-1] = True
    return done


def episode_bounds(done) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) int64 `[E]` of the episodes of a flat dataset with end flags `done` `[N]` (ends exclusive)."""
    ends = np.flatnonzero(np.asarray(done, bool)) + 1
    return np.concatenate([[0], ends[:-1]]).astype(np.int64), ends.astype(np.int64)


def returns_to_go(rewards, done) -> np.ndarray:
    """float32 `[N]`: sum of the rewards from each step to the end of its episode (undiscounted, as DT)."""
    rewards = np.asarray(rewards, np.float64)
    starts, ends = episode_bounds(done)
    out = np.empty_like(rewards)
    for start, end in zip(starts, ends, strict=True):
        out[start:end] = np.cumsum(rewards[start:end][::-1])[::-1]
    return out.astype(np.float32)


def episode_timesteps(done) -> np.ndarray:
    """int32 `[N]`: each step's index within its episode."""
    starts, ends = episode_bounds(done)
    return (np.arange(len(done)) - np.repeat(starts, ends - starts)).astype(np.int32)


def check_arrays(arrays: dict[str, np.ndarray], source: str) -> dict[str, np.ndarray]:
    """The D4RL arrays of `arrays` with their dtypes, checked for presence and matching lengths (ValueError)."""
    missing = [k for k in D4RL_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing}; a dataset needs {list(D4RL_KEYS)}, found "
                         f"{sorted(arrays)}")
    out = {
        "observations": np.asarray(arrays["observations"], np.float32),
        "actions": np.asarray(arrays["actions"], np.float32),
        "rewards": np.asarray(arrays["rewards"], np.float32).reshape(-1),
        "terminals": np.asarray(arrays["terminals"]).astype(bool).reshape(-1),
        "timeouts": np.asarray(arrays["timeouts"]).astype(bool).reshape(-1),
    }
    n = len(out["rewards"])
    if n == 0:
        raise ValueError(f"{source}: the dataset is empty")
    if out["observations"].ndim != 2 or out["actions"].ndim != 2:
        raise ValueError(f"{source}: observations and actions must be [N, dim], got shapes "
                         f"{out['observations'].shape} and {out['actions'].shape}")
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{source}: the arrays must all have N rows, got lengths {lengths}")
    return out


def write_dataset(path: str | Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> Path:
    """Write a `.npz` dataset (format in the module docstring); returns_to_go and timesteps are derived here."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"dataset files are written as .npz, got {str(path)!r}")
    if metadata.get("kind") not in DATASET_KINDS:
        raise ValueError(f"metadata kind must be one of {list(DATASET_KINDS)}, got {metadata.get('kind')!r}")
    data = check_arrays(arrays, str(path))
    done = episode_ends(data["terminals"], data["timeouts"])
    data["timeouts"] = done & ~data["terminals"]
    data["returns_to_go"] = returns_to_go(data["rewards"], done)
    data["timesteps"] = episode_timesteps(done)
    meta = {**metadata, "format_version": FORMAT_VERSION, "num_steps": int(len(done)),
            "num_episodes": int(done.sum())}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, metadata=np.asarray(json.dumps(meta)), **data)
    tmp.replace(path)
    return path


def load_dataset(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays: `D4RL_KEYS`, returns_to_go, timesteps; metadata) of a `.npz`, D4RL `.hdf5` or Minari `.hdf5` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist; make one with scripts/make_dataset.py")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            raw = {k: f[k] for k in f.files}
        metadata = json.loads(str(raw.pop("metadata"))) if "metadata" in raw else {}
        arrays = check_arrays(raw, str(path))
    elif path.suffix in (".hdf5", ".h5"):
        arrays, metadata = load_hdf5(path)
    else:
        raise ValueError(f"unknown dataset format {path.suffix!r} of {str(path)!r}; accepted: .npz, .hdf5, .h5")
    done = episode_ends(arrays["terminals"], arrays["timeouts"])
    arrays["returns_to_go"] = returns_to_go(arrays["rewards"], done)
    arrays["timesteps"] = episode_timesteps(done)
    return arrays, metadata


def load_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a dataset file without loading its arrays (`{}` for hdf5 files, which hold none)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist; make one with scripts/make_dataset.py")
    if path.suffix != ".npz":
        return {}
    with np.load(path, allow_pickle=False) as f:
        return json.loads(str(f["metadata"])) if "metadata" in f.files else {}


def load_hdf5(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """D4RL (flat root keys) or Minari (`episode_<i>` groups) hdf5 -> (D4RL arrays, metadata)."""
    try:
        import h5py
    except ImportError as err:
        raise ImportError(f"reading {str(path)!r} needs h5py: pip install h5py") from err
    with h5py.File(path, "r") as f:
        keys = sorted(f.keys())
        if "observations" in f and "actions" in f:
            arrays = {k: f[k][()] for k in D4RL_KEYS if k in f}
            return check_arrays(arrays, str(path)), {"source": "d4rl", "file": str(path)}
        episodes = sorted((k for k in keys if k.startswith("episode_")), key=lambda k: int(k.split("_")[-1]))
        if not episodes:
            raise ValueError(f"{str(path)!r} is neither a D4RL file (root keys {list(D4RL_KEYS)}) nor a Minari file "
                             f"(groups episode_<i>); found keys {keys}")
        parts = [minari_episode(f[name], f"{path}:{name}") for name in episodes]
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in D4RL_KEYS}
    return check_arrays(arrays, str(path)), {"source": "minari", "file": str(path)}


def minari_episode(group, where: str) -> dict[str, np.ndarray]:
    """One Minari episode group (observations `[T + 1, S]`, actions, rewards, terminations, truncations `[T]`) as
    D4RL rows: the last observation is dropped, the episode's last step ends it."""
    needed = ("observations", "actions", "rewards", "terminations", "truncations")
    missing = [k for k in needed if k not in group or not hasattr(group[k], "shape")]
    if missing:
        raise ValueError(f"{where}: Minari episode needs array datasets {list(needed)}; missing or not arrays: "
                         f"{missing}")
    actions = np.asarray(group["actions"][()], np.float32)
    steps = len(actions)
    terminals = np.asarray(group["terminations"][()], bool)
    timeouts = np.asarray(group["truncations"][()], bool)
    timeouts[-1] = timeouts[-1] or not terminals[-1]
    return {"observations": np.asarray(group["observations"][()], np.float32)[:steps],
            "actions": actions.reshape(steps, -1), "rewards": np.asarray(group["rewards"][()], np.float32),
            "terminals": terminals, "timeouts": timeouts}


def reference_scores(metadata: dict[str, Any], ref_min: float | None = None, ref_max: float | None = None):
    """(random, expert) reference returns: the given overrides, else the file's metadata; ValueError if neither
    has them or they do not satisfy random < expert."""
    low = metadata.get("ref_min_score") if ref_min is None else ref_min
    high = metadata.get("ref_max_score") if ref_max is None else ref_max
    if low is None or high is None:
        raise ValueError("the dataset has no reference returns (ref_min_score, ref_max_score); set "
                         "dataset.ref_min_score and dataset.ref_max_score in the config")
    if not float(low) < float(high):
        raise ValueError(f"reference returns must satisfy random < expert, got ref_min_score={low}, "
                         f"ref_max_score={high}")
    return float(low), float(high)


def normalized_score(returns, ref_min: float, ref_max: float):
    """D4RL's normalised score 100 * (R - random) / (expert - random), elementwise."""
    return 100.0 * (returns - ref_min) / (ref_max - ref_min)


@chex.dataclass(frozen=True)
class OfflineData:
    """A dataset on device. observations `[N, S]` (normalised), actions `[N, A]`, returns_to_go `[N]` (divided by
    the RTG scale), timesteps `[N]` int32, episode_end `[N]` int32 (exclusive end index of the step's episode)."""

    observations: jax.Array
    actions: jax.Array
    returns_to_go: jax.Array
    timesteps: jax.Array
    episode_end: jax.Array


@chex.dataclass(frozen=True)
class Windows:
    """Context windows, time-first: rtg `[K, B]`, states `[K, B, S]`, actions `[K, B, A]`, timesteps `[K, B]`
    int32, mask `[K, B]` bool (real steps; the padding after an episode's end is zero and False)."""

    rtg: jax.Array
    states: jax.Array
    actions: jax.Array
    timesteps: jax.Array
    mask: jax.Array


def state_stats(observations) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std + 1e-6) float32 `[S]` of the observations, DT's input normalisation."""
    obs = np.asarray(observations, np.float64)
    return obs.mean(0).astype(np.float32), (obs.std(0) + 1e-6).astype(np.float32)


def prepare(arrays: dict[str, np.ndarray], rtg_scale: float, mean, std) -> OfflineData:
    """`OfflineData` (numpy leaves) of loaded arrays: observations normalised by (mean, std), RTG / rtg_scale."""
    done = episode_ends(arrays["terminals"], arrays["timeouts"])
    starts, ends = episode_bounds(done)
    return OfflineData(
        observations=((arrays["observations"] - mean) / std).astype(np.float32),
        actions=np.asarray(arrays["actions"], np.float32),
        returns_to_go=(arrays["returns_to_go"] / rtg_scale).astype(np.float32),
        timesteps=np.asarray(arrays["timesteps"], np.int32),
        episode_end=np.repeat(ends, ends - starts).astype(np.int32),
    )


def gather_windows(data: OfflineData, starts, context: int, max_ep_len: int) -> Windows:
    """The windows of `context` steps beginning at steps `starts` `[B]`, cut at each episode's end."""
    idx = starts[None, :] + jnp.arange(context)[:, None]  # [K, B]
    mask = idx < data.episode_end[starts][None, :]
    idx = jnp.where(mask, idx, 0)

    def take(x):
        picked = x[idx]
        return jnp.where(mask.reshape(mask.shape + (1,) * (picked.ndim - 2)), picked, 0)

    return Windows(rtg=take(data.returns_to_go), states=take(data.observations), actions=take(data.actions),
                   timesteps=jnp.minimum(take(data.timesteps), max_ep_len - 1), mask=mask)


def sample_windows(data: OfflineData, key, batch: int, context: int, max_ep_len: int) -> Windows:
    """`batch` windows of `context` steps with start steps uniform over the dataset (jittable)."""
    starts = jax.random.randint(key, (batch,), 0, data.episode_end.shape[0])
    return gather_windows(data, starts, context, max_ep_len)

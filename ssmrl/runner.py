"""Runs an `Algorithm` for several seeds at once: one compiled program per checkpoint interval.

The states of all seeds are stacked (`jax.vmap(init)`), `update` is vmapped over seeds and scanned over
`checkpoint_every` updates inside one `jit`; each update streams its metrics `[num_seeds]` to the host from
inside the compiled program (`io_callback`) for tensorboard, CSV and the progress bar. Between intervals the
stacked state is checkpointed, so `resume` restarts from the last interval and reproduces the metrics of an
uninterrupted run bit for bit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from ssmrl.algorithm import Algorithm
from ssmrl.checkpoint import Checkpointer
from ssmrl.config import save_yaml
from ssmrl.logger import MetricsLogger


class TrainingDiverged(RuntimeError):
    """A metric became NaN or infinite; the last good checkpoint is kept on disk."""


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The top level of a config file: which trainer (its options are the section named after it), where the
    run writes (default: runs/<config file name>), seeds, checkpoints and logging."""

    algo: str = "ppo"
    out_dir: str = ""
    seed: int = 0
    num_seeds: int = 1
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    resume: bool = False
    tensorboard: bool = True
    progress: bool = True


HOUSEKEEPING = ("out_dir", "resume", "checkpoint_every", "keep_checkpoints", "tensorboard", "progress")
"""Run settings that do not change what is trained (a resumed run may change them)."""


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """uint32 `[num_seeds, 2]`: one PRNG key per seed of a run."""
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)


def initial_state(algorithm: Algorithm, settings: RunSettings):
    """The stacked state `[num_seeds, ...]` of a fresh run."""
    return jax.jit(jax.vmap(algorithm.init))(seed_keys(settings.seed, settings.num_seeds))


def restore_state(checkpoints: Checkpointer, step: int | None, algorithm: Algorithm, settings: RunSettings):
    """The stacked state saved at `step` (None: the latest), restored into the shapes and dtypes of a fresh run's
    state (abstract: the fresh state is not computed)."""
    return checkpoints.restore(step, target=jax.eval_shape(lambda: initial_state(algorithm, settings)))


def make_interval(algorithm: Algorithm, logger: MetricsLogger):
    """jit((state, updates int32 [n]) -> (state, metrics [n, num_seeds])): n updates, streaming metrics."""

    def log(update, metrics):
        logger.log(int(update), {name: np.asarray(value) for name, value in metrics.items()})

    def body(state, update):
        state, metrics = jax.vmap(algorithm.update)(state)
        io_callback(log, None, update, metrics, ordered=True)
        return state, metrics

    return jax.jit(lambda state, updates: jax.lax.scan(body, state, updates), donate_argnums=0)


def check_finite(metrics: dict[str, np.ndarray], first_update: int, last_good: int | None) -> None:
    """TrainingDiverged naming the first update and metric that is not finite."""
    for name, values in sorted(metrics.items()):
        bad = ~np.isfinite(values)
        if bad.any():
            row, seed = np.argwhere(bad)[0]
            kept = f"checkpoint {last_good} is kept" if last_good else "no checkpoint was written"
            raise TrainingDiverged(
                f"metric {name!r} is {values[row, seed]} at update {first_update + row} (seed index {seed}); "
                f"training stopped and {kept}. Lower the learning rate or check the env's rewards."
            )


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix or "<top level>"]
    keys = sorted(set(old) | set(new))
    return [k for key in keys for k in changed_keys(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else key)]


def run(algorithm: Algorithm, settings: RunSettings, resolved: dict[str, Any], title: str | None = None):
    """Trains all seeds to `algorithm.num_updates`, checkpointing every `checkpoint_every` updates.

    `resolved` is the whole resolved config: written to `out_dir/config.yaml` and stored with every checkpoint;
    on resume it must match the stored one (apart from `resume`). Returns (stacked final state, metrics
    {name: [updates run now, num_seeds]}).
    """
    out_dir = Path(settings.out_dir)
    checkpoints = Checkpointer(out_dir / "checkpoints", keep=settings.keep_checkpoints)
    metadata = {"run": {key: value for key, value in resolved.items() if key not in HOUSEKEEPING}}
    start = 0
    latest = checkpoints.latest_step()
    if latest is not None and not settings.resume:
        raise FileExistsError(
            f"{out_dir} already holds checkpoints (latest: update {latest}); pass resume=true to continue that run "
            "or choose another out_dir, so nothing written is overwritten"
        )
    if latest is not None:
        saved = checkpoints.restore_metadata(latest)
        changed = changed_keys(saved.get("run", {}), metadata["run"])
        if changed:
            raise ValueError(
                f"resume=true but the config differs from the one of the run in {out_dir} at {changed}; resume "
                "with the same config (its copy is out_dir/config.yaml)"
            )
        start = latest
    save_yaml(resolved, out_dir / "config.yaml")
    state = restore_state(checkpoints, start, algorithm, settings) if start else initial_state(algorithm, settings)
    if start >= algorithm.num_updates:
        return state, {}
    history: list[dict[str, np.ndarray]] = []
    with MetricsLogger(
        out_dir, algorithm.num_updates, algorithm.steps_per_update, settings.num_seeds, start_update=start,
        tensorboard=settings.tensorboard, progress=settings.progress, title=title,
    ) as logger:
        interval = make_interval(algorithm, logger)
        done = start
        while done < algorithm.num_updates:
            n = min(settings.checkpoint_every, algorithm.num_updates - done)
            state, metrics = interval(state, jnp.arange(done + 1, done + n + 1, dtype=jnp.int32))
            metrics = jax.device_get(metrics)
            check_finite(metrics, done + 1, checkpoints.latest_step())
            history.append(metrics)
            done += n
            checkpoints.save(done, state, metadata={**metadata, "update": done})
    return state, {name: np.concatenate([m[name] for m in history]) for name in history[0]}

"""Runs an `Algorithm` for several seeds at once: one compiled program per checkpoint interval.

The states of all seeds are stacked (`jax.vmap(init)`), `update` is vmapped over seeds and scanned over
`checkpoint_every` updates inside one `jit`; each update streams its metrics `[num_seeds]` to the host from
inside the compiled program (`io_callback`) for tensorboard, CSV and the progress bar. Between intervals the
stacked state is checkpointed, so `resume` restarts from the last interval and reproduces the metrics of an
uninterrupted run bit for bit (from the newest intact checkpoint: damaged newer ones are reported and set aside).

The run holds its folder's lock (`ssmrl.folder`) and refuses a non-empty folder unless `resume` or `overwrite`.
The first Ctrl-C stops training after the update in flight (the last checkpoint is kept; `Interrupted`), a second
one at once.

The state lives on a ("seed", "data") device mesh (`ssmrl.sharding`; `num_devices`, `mesh` settings): seeds over
"seed", envs over "data", parameters replicated; XLA inserts the gradient all-reduces. In a multi-process run
(`ssmrl.distributed`) every process runs this same loop and only process 0 writes config, metrics and logs
(checkpoints are written by orbax, which coordinates the processes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback
from jax.sharding import Mesh

from ssmrl.checkpoint import Checkpointer
from ssmrl.config import save_yaml
from ssmrl.distributed import is_primary
from ssmrl.folder import claim_run_folder, run_folder_lock
from ssmrl.logger import MetricsLogger
from ssmrl.rl.algorithm import Algorithm
from ssmrl.sharding import algorithm_mesh, make_mesh, replicated, state_shardings, with_shardings


class TrainingDiverged(RuntimeError):
    """A metric became NaN or infinite; the last good checkpoint is kept on disk."""


class Interrupted(KeyboardInterrupt):
    """Training was stopped by Ctrl-C (SIGINT); the last checkpoint is kept on disk. `str()` says where."""


class _StopRequested(Exception):
    """Raised inside the metrics callback to end the compiled interval after the update in flight."""


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The top level of a config file: which trainer (its options are the section named after it), where the
    run writes (default: runs/<config file name>), seeds, checkpoints, logging, and the devices: `num_devices`
    (0: all) arranged as `mesh` [seed, data] (empty: [1, num_devices]); see `ssmrl.sharding`."""

    algo: str = "ppo"
    out_dir: str = ""
    seed: int = 0
    num_seeds: int = 1
    checkpoint_every: int = 50
    keep_checkpoints: int = 3
    resume: bool = False
    overwrite: bool = False
    tensorboard: bool = True
    progress: bool = True
    num_devices: int = 0
    mesh: tuple[int, ...] = ()


HOUSEKEEPING = ("out_dir", "resume", "overwrite", "checkpoint_every", "keep_checkpoints", "tensorboard", "progress",
                "num_devices", "mesh")
"""Run settings that do not change what is trained (a resumed run may change them; results on another device
count agree up to float rounding)."""


def seed_keys(seed: int, num_seeds: int) -> jax.Array:
    """uint32 `[num_seeds, 2]`: one PRNG key per seed of a run."""
    return jax.random.split(jax.random.PRNGKey(seed), num_seeds)


def abstract_state(algorithm: Algorithm, settings: RunSettings):
    """Shape structs of the stacked state `[num_seeds, ...]` (nothing is computed)."""
    return jax.eval_shape(jax.vmap(algorithm.init), jax.ShapeDtypeStruct((settings.num_seeds, 2), jnp.uint32))


def placement(algorithm: Algorithm, settings: RunSettings, mesh: Mesh | None = None):
    """(shape structs of the stacked state, their NamedShardings on `mesh`; None: one device)."""
    abstract = abstract_state(algorithm, settings)
    return abstract, state_shardings(algorithm, mesh or make_mesh(1), abstract)


def initial_state(algorithm: Algorithm, settings: RunSettings, mesh: Mesh | None = None):
    """The stacked state `[num_seeds, ...]` of a fresh run, placed on `mesh` (None: one device)."""
    _, shardings = placement(algorithm, settings, mesh)
    return jax.jit(jax.vmap(algorithm.init), out_shardings=shardings)(seed_keys(settings.seed, settings.num_seeds))


def restore_state(checkpoints: Checkpointer, step: int | None, algorithm: Algorithm, settings: RunSettings,
                  mesh: Mesh | None = None):
    """The stacked state saved at `step` (None: the latest), restored into the shapes and dtypes of a fresh run's
    state, placed on `mesh` (None: one device) whatever device count it was saved from."""
    return checkpoints.restore(step, target=with_shardings(*placement(algorithm, settings, mesh)))


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """The out_dir of an `ssmrl train` run, as `ssmrl evaluate` hands it to an algorithm's evaluate entry:
    its path, run settings and trainer config; `restore` reads one of its checkpoints."""

    path: Path
    settings: RunSettings
    config: Any
    algorithm: Algorithm

    def restore(self, step: int | None = None) -> tuple[Any, int]:
        """(stacked state `[num_seeds, ...]`, its step) of checkpoint `step` (None: the newest intact one; damaged
        newer ones are reported on stderr)."""
        checkpoint_dir = self.path / "checkpoints"
        if not checkpoint_dir.is_dir():
            raise FileNotFoundError(f"no checkpoint in {str(self.path)!r}: {str(checkpoint_dir)!r} does not exist")
        with Checkpointer(checkpoint_dir) as checkpoints:
            if step is not None:
                return restore_state(checkpoints, step, self.algorithm, self.settings), step
            target = with_shardings(*placement(self.algorithm, self.settings))
            step, state, _ = checkpoints.restore_newest(target, report=note)
            return state, step


def note(message: str) -> None:
    """One line for the user on stderr."""
    print(f"ssmrl: {message}", file=sys.stderr)


def make_interval(algorithm: Algorithm, logger: MetricsLogger | None, shardings, mesh: Mesh,
                  stop: threading.Event | None = None):
    """jit((state, updates int32 [n]) -> (state, metrics [n, num_seeds])): n updates on `mesh`, streaming metrics
    to `logger` (None: not logged, e.g. on processes other than 0). The callback gets the whole metrics once per
    update; once `stop` is set it raises, which ends the call after the update in flight."""

    def log(update, metrics):
        if stop is not None and stop.is_set():
            raise _StopRequested
        if logger is not None:
            logger.log(int(update), {name: np.asarray(value) for name, value in metrics.items()})

    def body(state, update):
        state, metrics = jax.vmap(algorithm.update)(state)
        metrics = jax.lax.with_sharding_constraint(metrics, replicated(mesh))  # gathered once, then handed over
        io_callback(log, None, update, metrics, ordered=True)
        return state, metrics

    return jax.jit(lambda state, updates: jax.lax.scan(body, state, updates), donate_argnums=0,
                   in_shardings=(shardings, replicated(mesh)), out_shardings=(shardings, replicated(mesh)))


@contextlib.contextmanager
def stop_on_ctrl_c() -> Iterator[threading.Event]:
    """An event the first Ctrl-C sets (with a note); a second Ctrl-C raises KeyboardInterrupt at once. Outside the
    main thread nothing is installed and the event is never set."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        note("Ctrl-C: stopping after the current update (press it again to stop at once)")

    class DropStop(logging.Filter):  # jax logs a failed callback with its traceback; ours is no failure
        def filter(self, record):
            return not (record.exc_info and isinstance(record.exc_info[1], _StopRequested))

    quiet = DropStop()
    jax_callback_log = logging.getLogger("jax._src.callback")
    previous = signal.signal(signal.SIGINT, handler)
    jax_callback_log.addFilter(quiet)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
        jax_callback_log.removeFilter(quiet)


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
    on resume it must match the stored one (apart from the HOUSEKEEPING keys). Returns (stacked final state,
    metrics {name: [updates run now, num_seeds]}). Raises `Interrupted` after a Ctrl-C, `TrainingDiverged` when a
    metric is not finite; the folder's lock is released however it ends.
    """
    with contextlib.ExitStack() as stack:
        out_dir = Path(settings.out_dir)
        if is_primary():  # the other processes of a multi-host run write no files of their own
            stack.enter_context(run_folder_lock(out_dir))
            claim_run_folder(out_dir, settings.resume, settings.overwrite)
        return _run(algorithm, settings, resolved, title, out_dir, stack)


def _run(algorithm: Algorithm, settings: RunSettings, resolved: dict[str, Any], title: str | None, out_dir: Path,
         stack: contextlib.ExitStack):
    mesh = algorithm_mesh(algorithm, settings.num_devices, settings.mesh)
    abstract, shardings = placement(algorithm, settings, mesh)
    checkpoints = stack.enter_context(Checkpointer(out_dir / "checkpoints", keep=settings.keep_checkpoints))
    metadata = {"run": {key: value for key, value in resolved.items() if key not in HOUSEKEEPING}}
    start, state = 0, None
    if settings.resume and checkpoints.all_steps():
        start, state, _ = checkpoints.restore_newest(with_shardings(abstract, shardings), report=note,
                                                     check=_same_run(metadata["run"], out_dir))
        for step in checkpoints.all_steps():
            if step > start:
                note(f"moved damaged checkpoint {step} to {str(checkpoints.set_aside(step))!r}")
        note(f"resuming from checkpoint {start}")
    elif settings.resume:
        note(f"resume=true but {str(out_dir)!r} holds no checkpoint: starting from update 0")
    if is_primary():
        save_yaml(resolved, out_dir / "config.yaml")
    if state is None:
        state = initial_state(algorithm, settings, mesh)
    if start >= algorithm.num_updates:
        return state, {}
    history: list[dict[str, np.ndarray]] = []
    logger = stack.enter_context(MetricsLogger(
        out_dir, algorithm.num_updates, algorithm.steps_per_update, settings.num_seeds, start_update=start,
        tensorboard=settings.tensorboard, progress=settings.progress, title=title,
    )) if is_primary() else None
    stop = stack.enter_context(stop_on_ctrl_c())
    interval = make_interval(algorithm, logger, shardings, mesh, stop)
    done = start
    while done < algorithm.num_updates:
        n = min(settings.checkpoint_every, algorithm.num_updates - done)
        try:
            state, metrics = interval(state, np.arange(done + 1, done + n + 1, dtype=np.int32))
            metrics = jax.device_get(metrics)
        except Exception:
            if stop.is_set():
                raise Interrupted(f"training stopped by Ctrl-C before update {done + n}; the last checkpoint is "
                                  f"{_kept(checkpoints)}") from None
            raise
        check_finite(metrics, done + 1, checkpoints.latest_step())
        history.append(metrics)
        done += n
        checkpoints.save(done, state, metadata={**metadata, "update": done})
        if stop.is_set() and done < algorithm.num_updates:
            raise Interrupted(f"training stopped by Ctrl-C after update {done}; the last checkpoint is update {done}")
    return state, {name: np.concatenate([m[name] for m in history]) for name in history[0]}


def _kept(checkpoints: Checkpointer) -> str:
    latest = checkpoints.latest_step()
    return "none (no update was checkpointed yet)" if latest is None else f"update {latest}"


def _same_run(expected: dict, out_dir: Path) -> Callable[[dict], None]:
    """A check of a checkpoint's metadata: ValueError naming the keys whose values differ from `expected`."""

    def check(saved: dict) -> None:
        changed = changed_keys(saved.get("run", {}), expected)
        if changed:
            raise ValueError(
                f"resume=true but the config differs from the one of the run in {out_dir} at {changed}; resume "
                "with the same config (its copy is out_dir/config.yaml)"
            )

    return check

"""`Checkpointer`: atomic orbax checkpoints of a training state, keeping the last k.

Layout: `<directory>/<step>/state` (the pytree, orbax's standard format) and `<directory>/<step>/metadata` (JSON).
Orbax writes each checkpoint under a temporary name and renames it when complete, so a save interrupted by a crash
leaves at most a `<step>.orbax-checkpoint-tmp*` directory: it is never listed as a step, it is deleted the next time
a `Checkpointer` opens the directory, and older checkpoints are only pruned after a newer one is complete.

Each complete checkpoint also gets `<directory>/<step>.files.json`: the size and CRC-32 of every file in it, so a
truncated or corrupted checkpoint is recognised (`DamagedCheckpoint`, naming the file) before orbax reads it;
`restore_newest` then falls back to the newest intact one and `set_aside` moves damaged ones to `damaged/`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from ssmrl.closing import Closing
from ssmrl.config import write_text_atomic

MANIFEST = "{step}.files.json"
DAMAGED = "damaged"
# What orbax and tensorstore report about unreadable files (checkpoints written before manifests existed).
_READ_ERRORS = ("DATA_LOSS", "OUT_OF_RANGE", "Error reading", "Error opening", "Error decoding", "was not found")


class DamagedCheckpoint(ValueError):
    """A checkpoint whose files are truncated, corrupted or missing; the message names the file."""

    def __init__(self, step: int, message: str):
        super().__init__(message)
        self.step = step


class Checkpointer(Closing):
    """Saves and restores pytrees of jax/numpy arrays (PRNG keys as raw uint32 arrays) in `directory`."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be >= 1 (checkpoints to keep), got {keep}")
        self.directory = Path(directory).absolute()
        self._options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=False, cleanup_tmp_directories=True, create=True
        )
        with _quiet_orbax():
            self._manager = ocp.CheckpointManager(self.directory, options=self._options,
                                                  item_names=("state", "metadata"))

    def save(self, step: int, state: Any, metadata: dict | None = None) -> None:
        """Write checkpoint `step` (after the latest one) holding `state` and the JSON-able dict `metadata`."""
        latest = self.latest_step()
        if step < 0 or (latest is not None and step <= latest):
            raise ValueError(f"cannot save step {step} in {str(self.directory)!r}: steps must be >= 0 and after the "
                             f"latest checkpoint ({latest})")
        metadata = {} if metadata is None else metadata
        try:
            if not isinstance(metadata, dict):
                raise TypeError(f"got {type(metadata).__name__}")
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ValueError(f"checkpoint metadata must be a JSON-able dict (str keys; lists, str, finite numbers, "
                             f"bools, None inside): {err}") from err
        args = ocp.args.Composite(state=ocp.args.StandardSave(_as_arrays(state)), metadata=ocp.args.JsonSave(metadata))
        if not self._manager.save(step, args=args):
            raise RuntimeError(f"orbax declined to save step {step} in {str(self.directory)!r}")
        self._manager.wait_until_finished()
        if jax.process_index() == 0:
            write_text_atomic(self.directory / MANIFEST.format(step=step),
                              json.dumps(_file_table(self.directory / str(step))))
            kept = {MANIFEST.format(step=s) for s in self.all_steps()}
            for manifest in self.directory.glob(MANIFEST.format(step="*")):
                if manifest.name not in kept:
                    manifest.unlink(missing_ok=True)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None when there is none."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps of the complete checkpoints, ascending."""
        return sorted(self._manager.all_steps())

    def restore(self, step: int | None = None, target: Any = None) -> Any:
        """The state saved at `step` (None: the latest).

        `target`: a pytree of the saved structure (arrays or `jax.ShapeDtypeStruct`s, e.g. `jax.eval_shape(init)`)
        giving the containers (chex dataclasses, flax param dicts), shapes and dtypes to restore into; values are
        cast to its dtypes. Without it, containers come back as nested dicts of arrays. `DamagedCheckpoint` when
        its files are damaged, ValueError when it does not fit `target`.
        """
        step = self._existing(step)
        self.verify(step)
        target = None if target is None else _as_arrays(target)
        try:
            with _quiet_orbax():
                restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        except (ValueError, KeyError, OSError) as err:
            text = str(err)
            if isinstance(err, KeyError | OSError) or any(sign in text for sign in _READ_ERRORS):
                raise DamagedCheckpoint(step, f"checkpoint {step} in {str(self.directory)!r} is damaged: "
                                              f"{_first_line(text)}") from err
            raise ValueError(f"checkpoint {step} in {str(self.directory)!r} does not fit the target: "
                             f"{_first_line(text)}") from err
        return restored["state"]

    def restore_metadata(self, step: int | None = None) -> dict:
        """The metadata dict saved with checkpoint `step` (None: the latest); `DamagedCheckpoint` naming the file
        when it is not readable JSON."""
        step = self._existing(step)
        self.verify(step)
        try:
            with _quiet_orbax():
                args = ocp.args.Composite(metadata=ocp.args.JsonRestore())
                return self._manager.restore(step, args=args)["metadata"]
        except (ValueError, KeyError, OSError) as err:  # json.JSONDecodeError is a ValueError
            path = self.directory / str(step) / "metadata" / "metadata"
            raise DamagedCheckpoint(step, f"checkpoint {step}: its metadata file {str(path)!r} is damaged: "
                                          f"{_first_line(str(err))}") from err

    def verify(self, step: int) -> None:
        """`DamagedCheckpoint` naming the first file of checkpoint `step` that is missing, truncated or changed
        since it was saved (checked against `<step>.files.json`; a checkpoint without one is not checked)."""
        manifest = self.directory / MANIFEST.format(step=step)
        try:
            expected = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return
        root = self.directory / str(step)
        for name, (size, crc) in sorted(expected.items()):
            path = root / name
            problem = None
            if not path.is_file():
                problem = "is missing"
            elif path.stat().st_size != size:
                problem = f"has {path.stat().st_size} bytes, {size} were saved (truncated or overwritten)"
            elif _crc(path) != crc:
                problem = "is corrupted (its checksum changed)"
            if problem:
                raise DamagedCheckpoint(step, f"checkpoint {step} is damaged: {str(path)!r} {problem}")

    def restore_newest(self, target: Any = None, report: Callable[[str], None] = print,
                       check: Callable[[dict], None] | None = None) -> tuple[int, Any, dict]:
        """(step, state, metadata) of the newest intact checkpoint, calling `report` with why each newer one was
        skipped; FileNotFoundError when there is none (or none intact). `check(metadata)` runs before the state is
        read (its errors pass through); a checkpoint that does not fit `target` is an error, not damage."""
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {str(self.directory)!r}")
        damage = []
        for step in reversed(steps):
            try:
                metadata = self.restore_metadata(step)
                if check is not None:
                    check(metadata)
                state = self.restore(step, target)
            except DamagedCheckpoint as err:
                damage.append(str(err))
                continue
            for line in damage:
                report(f"{line}; using checkpoint {step} instead")
            return step, state, metadata
        raise FileNotFoundError(f"no intact checkpoint in {str(self.directory)!r}: " + "; ".join(damage))

    def set_aside(self, step: int) -> Path:
        """Moves (damaged) checkpoint `step` to `<directory>/damaged/<step>` so later steps can be saved; its path."""
        destination = self.directory / DAMAGED / str(step)
        if destination.exists():
            shutil.rmtree(destination)
        destination.parent.mkdir(exist_ok=True)
        os.replace(self.directory / str(step), destination)
        manifest = self.directory / MANIFEST.format(step=step)
        if manifest.exists():
            os.replace(manifest, destination.parent / manifest.name)
        self._manager.reload()
        return destination

    def close(self) -> None:
        self._manager.close()

    def _existing(self, step: int | None) -> int:
        steps = self.all_steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {str(self.directory)!r}")
        if step is None:
            return steps[-1]
        if step not in steps:
            raise FileNotFoundError(f"no checkpoint for step {step} in {str(self.directory)!r}; saved steps: {steps}")
        return step


def _as_arrays(tree: Any) -> Any:
    """`tree` with scalar leaves as numpy arrays; typed PRNG keys are rejected (store `jax.random.key_data`)."""

    def leaf(x):
        if isinstance(x, jax.Array | jax.ShapeDtypeStruct) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            raise ValueError(f"typed PRNG key leaf {x.dtype}: store raw uint32 keys (jax.random.PRNGKey or "
                             "jax.random.key_data) in checkpointed states")
        return x if isinstance(x, jax.Array | np.ndarray | jax.ShapeDtypeStruct) else np.asarray(x)

    return jax.tree.map(leaf, tree)


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    """Keeps orbax's absl log lines (e.g. about unreadable files) off the terminal; its errors are raised instead."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        absl.setLevel(level)


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return line if len(line) <= limit else line[:limit] + "..."


def _crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def _file_table(root: Path) -> dict[str, list[int]]:
    """{path relative to root: [size, CRC-32]} of every file under `root`."""
    return {str(p.relative_to(root)): [p.stat().st_size, _crc(p)] for p in sorted(root.rglob("*")) if p.is_file()}


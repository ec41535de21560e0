"""`Checkpointer`: atomic orbax checkpoints of a training state, keeping the last k.

Layout: `<directory>/<step>/state` (the pytree, orbax's standard format) and `<directory>/<step>/metadata` (JSON).
Orbax writes each checkpoint under a temporary name and renames it when complete, so a save interrupted by a crash
leaves at most a `<step>.orbax-checkpoint-tmp*` directory: it is never listed as a step, it is deleted the next time
a `Checkpointer` opens the directory, and older checkpoints are only pruned after a newer one is complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores pytrees of jax/numpy arrays (PRNG keys as raw uint32 arrays) in `directory`."""

    def __init__(self, directory: str | os.PathLike, keep: int = 3):
        if keep < 1:
            raise ValueError(f"keep must be >= 1 (checkpoints to keep), got {keep}")
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=False, cleanup_tmp_directories=True, create=True
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "metadata"))

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
        cast to its dtypes. Without it, containers come back as nested dicts of arrays.
        """
        step = self._existing(step)
        target = None if target is None else _as_arrays(target)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        except ValueError as err:
            raise ValueError(f"checkpoint {step} in {str(self.directory)!r} does not fit the target: {err}") from err
        return restored["state"]

    def restore_metadata(self, step: int | None = None) -> dict:
        """The metadata dict saved with checkpoint `step` (None: the latest)."""
        step = self._existing(step)
        return self._manager.restore(step, args=ocp.args.Composite(metadata=ocp.args.JsonRestore()))["metadata"]

    def close(self) -> None:
        self._manager.close()

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

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

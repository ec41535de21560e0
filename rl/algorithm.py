"""`Algorithm`: what a trainer hands the runner (one seed's init and update, as pure jittable functions)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One trainer, for one seed.

    init(key uint32 [2]) -> state (a pytree of arrays, PRNG keys inside as raw uint32);
    update(state) -> (state, metrics) with metrics a dict of float32 scalars.
    The runner vmaps both over seeds and scans `update` `num_updates` times.
    batch_axes(state or its shape structs) -> the state's structure with a bool per leaf: True where the leaf's
    first axis is the env batch N (env states, observations, carries), which the runner shards over the mesh's
    "data" axis; None: nothing is per-env (the state is replicated over "data").
    """

    init: Callable[[jax.Array], Any]
    update: Callable[[Any], tuple[Any, dict[str, jax.Array]]]
    num_updates: int
    steps_per_update: int
    batch_axes: Callable[[Any], Any] | None = None

    def train(self, key: jax.Array) -> tuple[Any, dict[str, jax.Array]]:
        """The whole run as one jittable, vmappable program: key -> (final state, metrics `[num_updates]`)."""
        return jax.lax.scan(lambda state, _: self.update(state), self.init(key), None, self.num_updates)

"""The memory world-model suites by name (`"memory_wm/<Name>"` in `ssmrl.envs.make`): factory(**overrides) -> env.

Long-term imagination: TwoRooms, FourRooms, TenRooms; context-dependent recall: FourRoomsTeleport,
TenRoomsTeleport; reward prediction: DistractingMemory; memory-based reasoning: MultiDoorsKeys.
Overrides are constructor arguments (e.g. image_size=16, max_steps=100).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

from gymnax.environments import environment

from ssmrl.envs.memory_wm.distracting_memory import DistractingMemory
from ssmrl.envs.memory_wm.multi_doors_keys import MultiDoorsKeys
from ssmrl.envs.memory_wm.rooms import ROOMS_SUITES, Rooms

PREFIX = "memory_wm/"


def _build(cls: type, settings: dict, **overrides) -> environment.Environment:
    accepted = sorted(inspect.signature(cls).parameters)
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise ValueError(f"{cls.__name__} got unknown kwargs {unknown}; accepted: {accepted}")
    return cls(**{**settings, **overrides})


MEMORY_WM_ENVS: dict[str, Callable[..., environment.Environment]] = {
    **{name: partial(_build, Rooms, settings) for name, settings in ROOMS_SUITES.items()},
    "DistractingMemory": partial(_build, DistractingMemory, {}),
    "MultiDoorsKeys": partial(_build, MultiDoorsKeys, {}),
}

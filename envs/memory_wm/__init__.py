"""S4WM's memory world-model benchmark (Deng, Park, Ahn 2023) as gymnax-API grid worlds with image observations.

    env, params = envs.make("memory_wm/FourRooms", image_size=64)

Suites and rules: `rooms` (long-term imagination, teleport recall), `distracting_memory` (reward prediction),
`multi_doors_keys` (memory-based reasoning); shared grid/rendering in `grid`. The paper's versions are 3D
(rooms) and 2D worlds whose full specification was not available here: each module says which of its rules and
settings are checked against the paper and which are ours (docs/worldmodels.md has the table).
"""

from ssmrl.envs.memory_wm.distracting_memory import DistractingMemory
from ssmrl.envs.memory_wm.multi_doors_keys import MultiDoorsKeys
from ssmrl.envs.memory_wm.rooms import Rooms
from ssmrl.envs.memory_wm.suite import MEMORY_WM_ENVS, PREFIX

__all__ = ["MEMORY_WM_ENVS", "PREFIX", "DistractingMemory", "MultiDoorsKeys", "Rooms"]

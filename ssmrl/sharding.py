"""Where the stacked training state lives on a device mesh with axes ("seed", "data").

Seeds are spread over "seed"; the env batch axis N of the leaves an `Algorithm` marks as per-env (`batch_axes`)
is spread over "data"; every other leaf (parameters, optimiser state, keys, counters) is replicated over "data".
Under `jax.jit` with these shardings XLA partitions the update (GSPMD): each device steps its slice of the envs,
and the reductions over the batch (losses, gradients, advantage statistics) become all-reduces, so the result is
the single-device program's up to the order of float additions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ssmrl.rl.algorithm import Algorithm

AXES = ("seed", "data")


def make_mesh(num_devices: int = 0, shape: Sequence[int] = ()) -> Mesh:
    """A ("seed", "data") mesh of the first `num_devices` devices (0: all of them, over all processes).

    `shape` is [seed, data] (empty: [1, num_devices]); ValueError naming the values when it does not fit.
    """
    available = jax.device_count()
    if not 0 <= num_devices <= available:
        raise ValueError(f"num_devices={num_devices} must be 0 (all) or between 1 and the {available} devices "
                         f"available ({jax.devices()[0].platform})")
    num_devices = num_devices or available
    shape = tuple(shape) or (1, num_devices)
    if len(shape) != 2 or min(shape) < 1 or shape[0] * shape[1] != num_devices:
        raise ValueError(f"mesh={list(shape)} must be [seed, data] sizes >= 1 whose product is num_devices="
                         f"{num_devices}, e.g. [1, {num_devices}]")
    return Mesh(np.asarray(jax.devices()[:num_devices]).reshape(shape), AXES)


def algorithm_mesh(algorithm: Algorithm, num_devices: int = 0, shape: Sequence[int] = ()) -> Mesh:
    """`make_mesh(num_devices, shape)`, except that an algorithm without an env batch axis (`batch_axes` None)
    runs on one device unless devices or a mesh are given (it could only spread seeds)."""
    if algorithm.batch_axes is None and not num_devices and not shape:
        return make_mesh(1)
    return make_mesh(num_devices, shape)


def check_divisible(mesh: Mesh, num_seeds: int, batch_sizes: set[int]) -> None:
    """ValueError unless the seed axis divides `num_seeds` and the data axis every env batch size (N, and N x
    agents for multi-agent sequences)."""
    seed_size, data_size = mesh.shape["seed"], mesh.shape["data"]
    if num_seeds % seed_size:
        raise ValueError(f"num_seeds={num_seeds} must be divisible by the mesh's seed axis size {seed_size} "
                         f"(mesh={[seed_size, data_size]})")
    if data_size > 1 and not batch_sizes:
        raise ValueError(f"the mesh's data axis has size {data_size}, but this algorithm has no env batch axis "
                         "to shard; use mesh=[num_devices, 1] (seeds only) or num_devices=1")
    bad = sorted(n for n in batch_sizes if n % data_size)
    if bad:
        raise ValueError(f"the env batch size N={bad[0]} must be divisible by the mesh's data axis size "
                         f"{data_size} (mesh={[seed_size, data_size]}); change num_envs or the mesh")


def state_shardings(algorithm: Algorithm, mesh: Mesh, state: Any) -> Any:
    """NamedShardings for the stacked `state` `[num_seeds, ...]` (arrays or shape structs): ("seed", "data") for
    per-env leaves, ("seed",) for the rest."""
    one_seed = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype), state)
    per_env = algorithm.batch_axes(one_seed) if algorithm.batch_axes else jax.tree.map(lambda _: False, one_seed)
    check_divisible(mesh, _leading(state), _batch_sizes(one_seed, per_env))
    return jax.tree.map(lambda flag: NamedSharding(mesh, PartitionSpec(*AXES if flag else AXES[:1])), per_env)


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding of an array every device holds whole (metrics, update counters)."""
    return NamedSharding(mesh, PartitionSpec())


def with_shardings(state: Any, shardings: Any) -> Any:
    """Shape structs of `state` carrying `shardings` (a restore target)."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)


def _leading(state: Any) -> int:
    return jax.tree.leaves(state)[0].shape[0]


def _batch_sizes(one_seed: Any, per_env: Any) -> set[int]:
    """The leading sizes of the per-env leaves; ValueError for a marked scalar."""
    marked = [x for x, flag in zip(jax.tree.leaves(one_seed), jax.tree.leaves(per_env), strict=True) if flag]
    if any(not x.shape for x in marked):
        raise ValueError("a leaf marked per-env by the algorithm's batch_axes is a scalar; per-env leaves must start "
                         "with the env batch axis N")
    return {x.shape[0] for x in marked}

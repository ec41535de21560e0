"""The one interface every recurrent core implements.

A core is a `flax.linen` module with

- `core.initialize_carry(batch_shape) -> carry`: the zero state for a batch (callable on the unbound module);
- `core(carry, x, resets) -> (carry, y)`: x `[T, B, D]` (any batch dims `[T, *batch, D]`), resets `[T, B]`
  bool (True at t: the state is zeroed before step t reads it), y `[T, B, D_out]`.

Step mode is T = 1. Running a sequence whole, in chunks that pass the carry on, or step by step gives the
same outputs and final carry; an output after a reset does not depend on any input before it.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def check_sequence(x, resets, owner: str):
    """Validate x `[T, *batch, D]` and resets `[T, *batch]` (None: no resets); returns bool resets."""
    x = jnp.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{owner}: x must be [T, *batch, D] (at least 2 dims), got shape {x.shape}")
    if resets is None:
        return jnp.zeros(x.shape[:-1], bool)
    resets = jnp.asarray(resets)
    if resets.shape != x.shape[:-1]:
        raise ValueError(f"{owner}: resets must have shape x.shape[:-1] = {x.shape[:-1]}, got {resets.shape}")
    return resets.astype(bool)


def check_carry_batch(carry_leaf, batch_shape: tuple, owner: str):
    """Check that a carry leaf's leading dims are the sequence's batch dims."""
    if tuple(carry_leaf.shape[: len(batch_shape)]) != tuple(batch_shape):
        raise ValueError(
            f"{owner}: carry batch shape {tuple(carry_leaf.shape[: len(batch_shape)])} does not match the "
            f"batch shape {tuple(batch_shape)} of x; build it with initialize_carry({tuple(batch_shape)})"
        )


class RecurrentCore(nn.Module):
    """Base class of the resettable cores (S5, GRU, LSTM, ...): see the module docstring."""

    @nn.nowrap
    def initialize_carry(self, batch_shape):
        raise NotImplementedError

    def __call__(self, carry, x, resets=None):
        raise NotImplementedError

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
import jax
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


def check_carry(core, carry, x, owner: str):
    """Raise a ValueError naming both shapes unless `carry` has the leaf shapes of `core.initialize_carry(batch)`
    for the batch dims of x `[T, *batch, D]` (e.g. an unbatched x `[T, D]` against a batched carry)."""
    batch = tuple(jnp.shape(x)[1:-1])
    expected = [leaf.shape for leaf in jax.tree.leaves(jax.eval_shape(lambda: core.initialize_carry(batch)))]
    got = [tuple(jnp.shape(leaf)) for leaf in jax.tree.leaves(carry)]
    if got != expected:
        raise ValueError(
            f"{owner}: carry of shape(s) {got} does not match x of shape {tuple(jnp.shape(x))} (batch shape {batch}), "
            f"for which initialize_carry({batch}) gives {expected}. x must be [T, *batch, D] and the carry this "
            f"core's initialize_carry(batch) builds"
        )


class RecurrentCore(nn.Module):
    """Base class of the resettable cores (S5, GRU, LSTM, ...): see the module docstring."""

    @nn.nowrap
    def initialize_carry(self, batch_shape):
        raise NotImplementedError

    def __call__(self, carry, x, resets=None):
        raise NotImplementedError

"""GRU and LSTM baselines behind the core interface (flax cells, scanned over time, reset on episode start)."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssmrl.ssm.core import RecurrentCore, check_carry, check_sequence


class _ResettingCell(nn.Module):
    """One step of a flax RNN cell whose carry is zeroed where `reset` is True. x `[*batch, D]`."""

    cell_type: type
    features: int

    @nn.compact
    def __call__(self, carry, inputs):
        x, reset = inputs
        carry = jax.tree.map(lambda c: jnp.where(reset[..., None], jnp.zeros_like(c), c), carry)
        return self.cell_type(self.features, name="cell")(carry, x)


class _RNNCore(RecurrentCore):
    """x `[T, *batch, D]` -> y `[T, *batch, features]`, one cell step per time step (lax.scan)."""

    features: int = 64
    cell_type = None  # set by subclasses

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]):
        cell = self.cell_type(self.features, parent=None)
        return cell.initialize_carry(jax.random.key(0), (*batch_shape, self.features))

    @nn.compact
    def __call__(self, carry, x, resets=None):
        name = type(self).__name__
        resets = check_sequence(x, resets, name)
        check_carry(self, carry, x, name)
        scan = nn.scan(
            _ResettingCell, variable_broadcast="params", split_rngs={"params": False}, in_axes=0, out_axes=0
        )
        return scan(self.cell_type, self.features, name="rnn")(carry, (x, resets))


class GRUCore(_RNNCore):
    """GRU baseline (flax `GRUCell`); carry `[*batch, features]`."""

    cell_type = nn.GRUCell


class LSTMCore(_RNNCore):
    """LSTM baseline (flax `OptimizedLSTMCell`); carry `(c, h)`, each `[*batch, features]`."""

    cell_type = nn.OptimizedLSTMCell

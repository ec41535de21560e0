"""A stack of residual sequence blocks behind the core interface, shared by the Mamba, Mamba-2 and LRU cores.

x `[T, *batch, D]` -> Dense(d_model) ("encoder") -> n_layers blocks, each carrying one layer state ->
`final_norm` -> y `[T, *batch, d_model]`. Carry: a tuple of n_layers per-layer carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from ssmrl.ssm.core import RecurrentCore, check_carry, check_sequence
from ssmrl.ssm.precision import float32_bias


class StackedCore(RecurrentCore):
    """Base class: subclasses give `layer()` (an unbound sequence layer) and `block(index)` (a named block
    around a fresh `layer()`, called as `block(carry, x, resets, deterministic=...) -> (carry, x)`)."""

    d_model: int = 64
    n_layers: int = 2
    dtype: Any = jnp.float32  # the encoder's compute dtype, bias in float32 (S5 and LRU blocks: all activations)

    @nn.nowrap
    def layer(self) -> nn.Module:
        """An unbound layer with this core's settings (`parent=None`: adopted by the block it is passed to)."""
        raise NotImplementedError

    @nn.nowrap
    def block(self, index: int) -> nn.Module:
        raise NotImplementedError

    @nn.nowrap
    def final_norm(self, x):
        """Applied to the last block's output (identity unless a subclass overrides it)."""
        return x

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]):
        if self.n_layers < 1:
            raise ValueError(f"{type(self).__name__}: n_layers must be >= 1, got {self.n_layers}")
        return tuple(self.layer().initialize_carry(tuple(batch_shape)) for _ in range(self.n_layers))

    @nn.compact
    def __call__(self, carry, x, resets=None, deterministic: bool = True):
        owner = type(self).__name__
        resets = check_sequence(x, resets, owner)
        if len(carry) != self.n_layers:
            raise ValueError(f"{owner}: carry has {len(carry)} layers, the core has n_layers={self.n_layers}")
        check_carry(self, carry, x, owner)
        x = nn.Dense(self.d_model, dtype=self.dtype, promote_dtype=float32_bias, name="encoder")(x)
        new_carry = []
        for i, layer_carry in enumerate(carry):
            layer_carry, x = self.block(i)(layer_carry, x, resets, deterministic=deterministic)
            new_carry.append(layer_carry)
        return tuple(new_carry), self.final_norm(x)

"""Depthwise causal convolution over time that never reaches across an episode reset.

y_t = bias + sum_j kernel[j] * x_{t-(K-1)+j}, with every tap that reads an input from before the last reset
at or before t replaced by zero. The last K-1 inputs are carried as a window `[*batch, K-1, C]` so chunks and
single steps continue the convolution exactly; window entries that precede a reset are cleared (zeros), the
same state a fresh episode starts from.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def symmetric_uniform(bound: float):
    """Initialiser drawing uniformly from [-bound, bound] (PyTorch's default Linear/Conv1d scheme)."""
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def last_reset(resets, width: int):
    """Index of the last reset at or before each t `[T, *batch]`; `-width` where there was none."""
    steps = jnp.arange(resets.shape[0]).reshape((-1,) + (1,) * (resets.ndim - 1))
    return jax.lax.cummax(jnp.where(resets, steps, -width), axis=0)


def any_non_finite(x, axis):
    """bool: some entry of x along `axis` is NaN or inf (the chunked forms' check of an initial state). Behind an
    optimisation barrier: a constant x (a zero carry made inside jit) would otherwise be constant-folded by XLA, which
    took 4-12 s of compile time per call site for a 1024 x 16 x 64 x 16 state."""
    return ~jnp.isfinite(jax.lax.optimization_barrier(x)).all(axis)


class CausalConv(nn.Module):
    """Depthwise causal conv1d of width K: x `[T, *batch, C]` -> y `[T, *batch, C]`, carry `[*batch, K-1, C]`.

    Initialised as PyTorch's Conv1d (kernel and bias uniform in +-1/sqrt(K)), as in Mamba's reference model;
    `use_bias=False` drops the bias (Gated DeltaNet's short convolutions).
    """

    features: int
    width: int = 4
    use_bias: bool = True

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]):
        self._check()
        return jnp.zeros((*batch_shape, self.width - 1, self.features), jnp.float32)

    @nn.nowrap
    def _check(self):
        if self.width < 1:
            raise ValueError(f"CausalConv: width (d_conv) must be >= 1, got {self.width}")

    @nn.compact
    def __call__(self, window, x, resets):
        """window `[*batch, K-1, C]`, x `[T, *batch, C]`, resets `[T, *batch]` -> (window, y `[T, *batch, C]`)."""
        self._check()
        k, steps = self.width, x.shape[0]
        init = symmetric_uniform(k**-0.5)
        kernel = self.param("kernel", init, (k, self.features))
        bias = self.param("bias", init, (self.features,)) if self.use_bias else jnp.zeros((), x.dtype)
        start = last_reset(resets, k)[..., None]  # [T, *batch, 1]
        times = jnp.arange(steps).reshape((-1,) + (1,) * (x.ndim - 1))  # [T, 1.., 1]
        padded = jnp.concatenate([jnp.moveaxis(window, -2, 0).astype(x.dtype), x])  # [T+K-1, *batch, C]
        y = bias
        for j in range(k):  # tap j reads time t - (K-1) + j, i.e. padded[t + j]
            valid = times - (k - 1) + j >= start
            y = y + kernel[j] * jnp.where(valid, padded[j : j + steps], 0.0)
        tail_times = jnp.arange(steps - (k - 1), steps).reshape((-1,) + (1,) * (x.ndim - 1))  # [K-1, 1.., 1]
        tail = jnp.where(tail_times >= start[-1], padded[steps:], 0.0)  # cleared before the last reset
        return jnp.moveaxis(tail, 0, -2), y

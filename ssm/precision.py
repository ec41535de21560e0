"""Mixed precision for flax's Dense and Conv layers: `float32_bias`, a `promote_dtype` hook, and `at_least_float32`.

flax's default promotion casts inputs, kernel and bias to the layer's `dtype`, so a bfloat16 layer adds a bfloat16
bias, and the bias's gradient is a bfloat16 sum over every batch and time position. XLA's CPU backend accumulates
such a sum (over several axes) in bfloat16, which stops growing once the sum outgrows the terms by about 2^8: a sum
of 2,592 terms near 0.05 came out 80 instead of 131, and a Drama decoder bias's gradient 57% off.

`float32_bias` casts only the inputs and the kernel: the matmul or convolution runs in `dtype` and the float32 bias
is added to its result, so the layer's output is float32 and the bias's gradient a float32 sum (as under PyTorch's
autocast, whose bfloat16 matmuls add the bias in float32). For a float32 layer it is flax's own promotion.

    nn.Dense(features, dtype=jnp.bfloat16, promote_dtype=float32_bias)
"""

from __future__ import annotations

import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype


def float32_bias(inputs, kernel, bias=None, dtype=None):
    """(inputs, kernel) promoted to `dtype` (flax's rule), the bias unchanged (float32 parameters)."""
    inputs, kernel = promote_dtype(inputs, kernel, dtype=dtype)
    return inputs, kernel, bias


def at_least_float32(x):
    """x in float32 if its dtype is narrower (bfloat16), else unchanged: where a mixed-precision layer hands its
    result back to float32 arithmetic (Mamba's residual stream, Mamba-2's projections)."""
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))

"""`float32_bias`: bfloat16 Dense and conv layers whose bias is added, and its gradient summed, in float32; float32
layers exactly as flax's default promotion."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssmrl.ssm.precision import float32_bias

LAYERS = {
    "dense": lambda **kw: nn.Dense(4, **kw),
    "conv": lambda **kw: nn.Conv(4, (3, 3), padding="SAME", **kw),
    "conv_transpose": lambda **kw: nn.ConvTranspose(4, (3, 3), strides=(2, 2), padding="SAME", **kw),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_bias_gradient_is_a_float32_sum(name):
    """A bfloat16 layer over 18 x 6 x 6 positions: float32 output, and d sum(w * y) / d bias = sum(w) to float32
    rounding (w near 0.05: a bfloat16 sum of these stalls far below); in float32 the hook changes nothing."""
    x = jax.random.normal(jax.random.key(0), (18, 6, 6, 3))
    layer = LAYERS[name](dtype=jnp.bfloat16, promote_dtype=float32_bias)
    params = layer.init(jax.random.key(1), x)
    y = layer.apply(params, x)
    assert y.dtype == jnp.float32
    w = 0.05 + 0.01 * jax.random.normal(jax.random.key(2), y.shape)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(w * layer.apply(p, x))))(params)["params"]["bias"]
    np.testing.assert_allclose(grad, w.sum(range(w.ndim - 1)), rtol=1e-5)
    plain, hooked = LAYERS[name](), LAYERS[name](promote_dtype=float32_bias)
    np.testing.assert_array_equal(hooked.apply(params, x), plain.apply(params, x))

"""The vmap-safe orthogonal initializer: orthonormal, the same matrices as LAPACK's QR, batches under vmap."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ssmrl.ssm.initializers import householder_q, orthogonal


@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**16))
def test_householder_q_matches_lapack(rows, cols, seed):
    rows, cols = max(rows, cols), min(rows, cols)
    a = jax.random.normal(jax.random.PRNGKey(seed), (rows, cols))
    q_ref, r_ref = np.linalg.qr(np.asarray(a, np.float64))
    q_ref = q_ref * np.sign(np.diag(r_ref))
    np.testing.assert_allclose(householder_q(a), q_ref, atol=2e-5)


@given(st.integers(1, 10), st.integers(1, 10), st.floats(0.01, 3.0))
def test_orthogonal_rows_or_columns(rows, cols, scale):
    w = np.asarray(orthogonal(scale)(jax.random.PRNGKey(rows * 11 + cols), (rows, cols)), np.float64)
    gram = w.T @ w if rows >= cols else w @ w.T
    np.testing.assert_allclose(gram, scale**2 * np.eye(min(rows, cols)), atol=1e-4 * scale**2)


def test_vmap_over_keys_equals_single_calls():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    batched = jax.jit(jax.vmap(lambda k: orthogonal(2.0)(k, (6, 4))))(keys)
    for i, key in enumerate(keys):
        np.testing.assert_allclose(batched[i], orthogonal(2.0)(key, (6, 4)), atol=1e-6)
    assert batched.dtype == jnp.float32

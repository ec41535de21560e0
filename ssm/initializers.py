"""`orthogonal(scale)`: a Haar-random orthogonal initializer safe to vmap on CPU.

flax's / jax's `orthogonal` calls LAPACK's QR; batched by `jax.vmap` (over seeds, or over envs drawing random
projections) on jaxlib 0.10's CPU backend, that QR can deadlock its thread pool on small machines. This one runs
Householder QR in plain jnp (a `fori_loop` over columns), so it batches like any other array code. Same
distribution as jax's: Q of the QR of a Gaussian matrix with R's diagonal made positive.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def householder_q(a):
    """Q `[m, n]` (m >= n) of a = QR with diag(R) > 0, by Householder reflections in plain jnp."""
    m, n = a.shape
    rows = jnp.arange(m)

    def reflect(k, carry):
        r, q = carry
        x = jnp.where(rows >= k, r[:, k], 0.0)
        alpha = -jnp.where(x[k] >= 0, 1.0, -1.0) * jnp.linalg.norm(x)
        v = x - alpha * (rows == k)
        v = v / jnp.linalg.norm(v)
        return r - 2.0 * jnp.outer(v, v @ r), q - 2.0 * jnp.outer(q @ v, v)

    r, q = jax.lax.fori_loop(0, n, reflect, (a, jnp.eye(m, dtype=a.dtype)))
    return q[:, :n] * jnp.where(jnp.diagonal(r) >= 0, 1.0, -1.0)


def orthogonal(scale: float = 1.0):
    """Initializer `(key, shape [rows, cols], dtype) -> scale * (semi-)orthogonal matrix` (orthonormal columns when
    rows >= cols, orthonormal rows otherwise)."""

    def init(key, shape, dtype=jnp.float32):
        if len(shape) != 2:
            raise ValueError(f"orthogonal initializer needs a 2-D shape, got {shape}")
        rows, cols = shape
        tall = rows >= cols
        a = jax.random.normal(key, (rows, cols) if tall else (cols, rows), jnp.float32)
        q = householder_q(a)
        return (scale * (q if tall else q.T)).astype(dtype)

    return init

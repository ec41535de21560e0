"""Property checks that every recurrent core must pass: one function per property, any core."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


class JittedCore:
    """A core whose `init` and `apply` are jitted: one compile per shape instead of one per eager op."""

    def __init__(self, core):
        self.core = core
        self.initialize_carry = core.initialize_carry
        self.init = jax.jit(core.init)
        self.apply = jax.jit(core.apply)


def random_sequence(key, steps: int, batch: int, dim: int, reset_prob: float = 0.2):
    """x `[T, B, D]` float32 and resets `[T, B]` bool (reset at t=0 for half the batch)."""
    kx, kr = jax.random.split(key)
    x = jax.random.normal(kx, (steps, batch, dim))
    resets = jax.random.bernoulli(kr, reset_prob, (steps, batch))
    resets = resets.at[0].set(jnp.arange(batch) % 2 == 0)
    return x, resets


def init_core(core, key, x, resets):
    carry = core.initialize_carry(x.shape[1:-1])
    return core.init(key, carry, x, resets)


def run_whole(core, params, x, resets, carry=None):
    carry = core.initialize_carry(x.shape[1:-1]) if carry is None else carry
    return core.apply(params, carry, x, resets)


def run_chunked(core, params, x, resets, sizes):
    """Run consecutive chunks of the given sizes, passing the carry on; returns (carry, y)."""
    carry = core.initialize_carry(x.shape[1:-1])
    ys, start = [], 0
    for size in sizes:
        carry, y = core.apply(params, carry, x[start : start + size], resets[start : start + size])
        ys.append(y)
        start += size
    assert start == x.shape[0]
    return carry, jnp.concatenate(ys)


def assert_close(a, b, rtol: float, what: str):
    """Relative error max|a - b| / max(max|b|, 1e-6) below rtol, for arrays or pytrees."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        err = np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-6)
        assert err < rtol, f"{what}: relative error {err:.2e} >= {rtol:.0e}"


def assert_modes_agree(core, key, steps=12, batch=3, dim=5, rtol=1e-5):
    """Whole sequence == chunks passing the carry == step by step (outputs and final carry)."""
    x, resets = random_sequence(key, steps, batch, dim)
    params = init_core(core, jax.random.key(1), x, resets)
    carry, y = run_whole(core, params, x, resets)
    sizes = [steps // 3, steps - 2 * (steps // 3), steps // 3]
    carry_c, y_c = run_chunked(core, params, x, resets, sizes)
    step = jax.jit(core.apply)
    carry_s, ys = core.initialize_carry((batch,)), []
    for t in range(steps):
        carry_s, y_t = step(params, carry_s, x[t : t + 1], resets[t : t + 1])
        ys.append(y_t)
    assert_close(y_c, y, rtol, "chunked vs whole outputs")
    assert_close(jnp.concatenate(ys), y, rtol, "step vs whole outputs")
    assert_close(carry_c, carry, rtol, "chunked vs whole carry")
    assert_close(carry_s, carry, rtol, "step vs whole carry")


def assert_reset_isolation(core, key, steps=10, dim=4, reset_at=4):
    """d y_t / d x_s == 0 exactly for every s < reset_at <= t (a reset at `reset_at`)."""
    x, _ = random_sequence(key, steps, 1, dim)
    resets = jnp.zeros((steps, 1), bool).at[reset_at].set(True)
    params = init_core(core, jax.random.key(2), x, resets)

    def after_reset(x):
        _, y = run_whole(core, params, x, resets)
        return jnp.sum(y[reset_at:] ** 2)

    grad = jax.jit(jax.grad(after_reset))(x)
    assert np.all(np.asarray(grad[:reset_at]) == 0.0), "gradient leaks across the reset"
    assert np.any(np.asarray(grad[reset_at:]) != 0.0), "no gradient at all after the reset"


def assert_carry_stable(core, key, batch=(2, 3), steps=5, dim=4):
    """The carry keeps its structure, shapes and dtypes through a jitted and a vmapped call."""
    x = jax.random.normal(key, (steps, *batch, dim))
    resets = jnp.zeros((steps, *batch), bool)
    params = init_core(core, jax.random.key(3), x, resets)
    carry0 = core.initialize_carry(batch)
    carry1, _ = jax.jit(core.apply)(params, carry0, x, resets)
    spec = lambda c: jax.tree.map(lambda a: (a.shape, a.dtype), c)
    assert spec(carry1) == spec(carry0)
    # vmap over an outer batch axis: x [T, V, *batch, D] -> per-V calls on [T, *batch, D].
    xv = jnp.stack([x, x + 1.0], axis=1)
    rv = jnp.stack([resets, resets], axis=1)
    cv = jax.tree.map(lambda a: jnp.stack([a, a]), carry0)
    carry_v, _ = jax.vmap(lambda c, x, r: core.apply(params, c, x, r), in_axes=(0, 1, 1))(cv, xv, rv)
    assert spec(jax.tree.map(lambda a: a[0], carry_v)) == spec(carry0)


def assert_reset_at_start_forgets_carry(core, key, shape=(12, 3, 5)):
    """With a reset at t=0 everywhere, a carried state (every leaf nonzero) changes nothing."""
    x, resets = random_sequence(key, *shape)
    params = init_core(core, jax.random.key(4), x, resets)
    carry, _ = run_whole(core, params, x, resets)  # a nonzero carry
    assert all(float(jnp.max(jnp.abs(leaf))) > 0 for leaf in jax.tree.leaves(carry))
    fresh = resets.at[0].set(True)
    carry_a, y_a = run_whole(core, params, x, fresh, carry)
    carry_b, y_b = run_whole(core, params, x, fresh)
    assert_close(y_a, y_b, 1e-6, "outputs after a reset at t=0")
    assert_close(carry_a, carry_b, 1e-6, "carry after a reset at t=0")

"""Nothing crosses an episode reset, NaN and inf included (issue 19, point 3).

For `reset_scan` / `reset_scan_planes` with every method (the Pallas kernel in interpret mode on CPU) and for
every registered core with every scan method (Mamba-2 and LRU also with eigenvalue_range "[-1,1]"): a non-finite
h0 (carry), or non-finite inputs before the reset, leave the states and outputs from the reset on finite and equal
to a fresh start; the gradient of everything after a reset with respect to everything before it is exactly zero,
and finite where the carry is NaN.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssmrl.ssm import CORES, from_planes, make_core, reset_scan, reset_scan_planes, to_planes

T, B, P, RESET_AT = 7, 2, 3, 3
METHODS = ("sequential", "associative", "chunked", "associative_flag", "pallas")


def inputs(dtype):
    """a, b `[T, B, P]` and resets `[T, B]`: a reset at RESET_AT in every sequence, none before it."""
    ka, kb, ki = jax.random.split(jax.random.key(0), 3)
    a = jax.random.uniform(ka, (T, B, P), minval=0.5, maxval=1.0)
    b = jax.random.normal(kb, (T, B, P))
    if dtype == jnp.complex64:
        a = a * jnp.exp(1j * jax.random.uniform(ki, (T, B, P)))
        b = (b + 1j * jax.random.normal(ki, (T, B, P))).astype(dtype)
    resets = jnp.zeros((T, B), bool).at[RESET_AT].set(True).at[5, 0].set(True)
    return a.astype(dtype), b, resets


def scan(method, a, b, resets, h0):
    return reset_scan(a, b, resets, h0, method=method, chunk_size=2)  # chunks of 2: the reset inside a chunk


def bad_state(dtype, shape=(B, P)):
    """NaN in the first sequence's state, inf in the second's."""
    return jnp.zeros(shape, dtype).at[0].set(np.nan).at[1].set(np.inf)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.complex64])
@pytest.mark.parametrize("method", METHODS)
def test_reset_scan_drops_non_finite_state_and_inputs(method, dtype):
    a, b, resets = inputs(dtype)
    fresh = scan(method, a[RESET_AT:], b[RESET_AT:], resets[RESET_AT:], None)
    # a bad carry, a bad input and a bad decay before the reset
    h0 = bad_state(dtype)
    a_bad, b_bad = a.at[RESET_AT - 1, :, 0].set(np.nan), b.at[1, :, 1].set(np.inf)
    h = scan(method, a_bad, b_bad, resets, h0)
    assert not np.isfinite(np.asarray(h[:RESET_AT])).all(), "non-finite values before the reset must stay"
    assert np.isfinite(np.asarray(h[RESET_AT:])).all()
    np.testing.assert_allclose(h[RESET_AT:], fresh, rtol=1e-5, atol=1e-6)
    # step mode (T = 1): the elementwise path
    h1 = reset_scan(a[:1], b[:1], jnp.ones((1, B), bool), h0, method=method)
    np.testing.assert_array_equal(h1, b[:1])


@pytest.mark.parametrize("method", METHODS)
def test_reset_scan_gradients_zero_across_a_reset(method):
    a, b, resets = inputs(jnp.float32)
    h0 = jax.random.normal(jax.random.key(1), (B, P))

    def after(a, b, h0):  # a loss on the states from the reset on
        return jnp.sum(scan(method, a, b, resets, h0)[RESET_AT:] ** 2)

    da, db, dh0 = jax.jit(jax.grad(after, argnums=(0, 1, 2)))(a, b, h0)
    for g in (da[:RESET_AT], db[:RESET_AT], dh0):
        np.testing.assert_array_equal(g, 0.0)
    # with a NaN carry the gradients from the reset on are finite and those of a fresh start
    nan_grads = jax.jit(jax.grad(after, argnums=(0, 1)))(a, b, jnp.full((B, P), jnp.nan))
    for g_nan, g in zip(nan_grads, (da, db), strict=True):
        np.testing.assert_allclose(g_nan[RESET_AT:], g[RESET_AT:], rtol=1e-5)


@pytest.mark.parametrize("method", ["sequential", "associative", "chunked", "pallas"])
def test_reset_scan_planes_drops_non_finite_state(method):
    a, b, resets = inputs(jnp.complex64)
    fresh = reset_scan_planes(to_planes(a[RESET_AT:]), to_planes(b[RESET_AT:]), resets[RESET_AT:], method=method)
    h0 = to_planes(bad_state(jnp.complex64))
    h = reset_scan_planes(to_planes(a), to_planes(b.at[0].set(np.nan)), resets, h0, method=method)
    np.testing.assert_allclose(from_planes(h)[RESET_AT:], from_planes(fresh), rtol=1e-5, atol=1e-6)
    step = reset_scan_planes(to_planes(a[:1]), to_planes(b[:1]), jnp.ones((1, B), bool), h0, method=method)
    np.testing.assert_array_equal(from_planes(step), b[:1])


# ---- every core, every scan method

TINY = {
    "s5": {"d_model": 4, "state_size": 4, "n_layers": 2},
    "s4": {"d_model": 4, "state_size": 4, "n_layers": 2},
    "s4d": {"d_model": 4, "state_size": 4, "n_layers": 2},
    "lru": {"d_model": 4, "state_size": 4, "n_layers": 2},
    "mamba": {"d_model": 4, "n_layers": 2, "d_state": 2, "d_conv": 3},
    "mamba2": {"d_model": 4, "n_layers": 2, "d_state": 2, "head_dim": 4, "chunk_size": 4, "d_conv": 3},
    "gated_deltanet": {"d_model": 4, "n_layers": 2, "n_heads": 2, "head_dim": 2, "chunk_size": 3, "d_conv": 3},
    "deltaproduct": {"d_model": 4, "n_layers": 2, "n_heads": 2, "head_dim": 2, "chunk_size": 4, "d_conv": 3},
    "gru": {"features": 4},
    "lstm": {"features": 4},
}
# Grazzi et al.'s negative eigenvalues: case name -> (registered core, options on top of its TINY ones).
VARIANTS = {f"{name}[-1,1]": (name, {"eigenvalue_range": "[-1,1]"}) for name in ("mamba2", "lru")}


def config(case):
    """(registered name, options) of a case: a core of TINY or a VARIANTS entry."""
    name, extra = VARIANTS.get(case, (case, {}))
    return name, {**TINY[name], **extra}

# On CPU "auto" is "sequential", which every scan core runs here. The kernel path ("pallas") is one kernel for all
# of them, checked above method by method; through a core it runs for S5 (complex, on planes) and Mamba (real)
# only, since interpret mode on CPU is slow. The associative and chunked scans are covered method by method above.
# The delta-rule cores have no scan method (their chunks pass a matrix state through a lax.scan); chunks of 3 and 4
# put the reset at 3 first in a chunk and inside one (DeltaProduct: step 6 of its interleaved sequence).
NO_SCAN_METHOD = ("gru", "lstm", "s4", "gated_deltanet", "deltaproduct")
CASES = [(name, None) for name in sorted(CORES) if name in NO_SCAN_METHOD]
CASES += [(name, "sequential") for name in sorted(CORES) if name not in NO_SCAN_METHOD]
CASES += [(case, "sequential") for case in sorted(VARIANTS)]
CASES += [("s5", "pallas"), ("mamba", "pallas")]


def test_every_registered_core_is_covered():
    assert set(TINY) == set(CORES)


@functools.cache
def jitted(case, method):
    """The core of this case with this scan method (None: its default) and its jitted apply."""
    name, cfg = config(case)
    core = make_core(name, **cfg, **({} if method is None else {"scan_method": method}))
    return core, jax.jit(core.apply)


@functools.cache
def params_of(case):
    """Parameters (they do not depend on the scan method), a sequence `[8, 2, 3]` with a reset at RESET_AT."""
    name, cfg = config(case)
    core = make_core(name, **cfg)
    x = jax.random.normal(jax.random.key(2), (8, B, 3))
    resets = jnp.zeros((8, B), bool).at[RESET_AT].set(True)
    return jax.jit(core.init)(jax.random.key(0), core.initialize_carry((B,)), x, resets), x, resets


def bad_carry(clean):
    """NaN in the carry of the first sequence, inf in the second's (every leaf)."""
    return jax.tree.map(lambda c: c.at[0].set(np.nan).at[1].set(np.inf), clean)


@pytest.mark.parametrize(("name", "method"), CASES)
def test_core_forgets_a_non_finite_carry_at_a_reset(name, method):
    core, apply = jitted(name, method)
    params, x, resets = params_of(name)
    clean = core.initialize_carry((B,))
    fresh_carry, fresh = apply(params, clean, x, resets)  # from the reset on: a fresh start
    out_carry, y = apply(params, bad_carry(clean), x, resets)
    assert not np.isfinite(np.asarray(y[:RESET_AT])).all(), f"{name} {method}: a bad carry must show before the reset"
    assert np.isfinite(np.asarray(y[RESET_AT:])).all(), f"{name} {method}: non-finite after the reset"
    np.testing.assert_allclose(y[RESET_AT:], fresh[RESET_AT:], rtol=1e-5, atol=1e-6)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), out_carry, fresh_carry)


@pytest.mark.parametrize("name", sorted(TINY) + sorted(VARIANTS))
def test_core_step_mode_forgets_a_non_finite_carry(name):
    core, apply = jitted(name, None)
    params, x, _ = params_of(name)
    clean, start = core.initialize_carry((B,)), jnp.ones((1, B), bool)
    carry, y = apply(params, bad_carry(clean), x[:1], start)
    fresh_carry, fresh = apply(params, clean, x[:1], start)
    np.testing.assert_allclose(y, fresh, rtol=1e-6, atol=1e-6)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-6, atol=1e-6), carry, fresh_carry)

"""reset_scan: every method equals the sequential reference, values and gradients, with random resets; the planar
form reset_scan_planes equals the complex one."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmrl.ssm.scan import METHODS, from_planes, reset_scan, reset_scan_planes, to_planes

PARALLEL = [m for m in METHODS if m not in ("sequential", "auto")] + ["auto"]


def reference(a, b, resets, h0):
    """Plain Python loop over time: the definition of the recurrence."""
    a, b = np.broadcast_to(np.asarray(a), b.shape), np.asarray(b)
    r = np.asarray(resets).reshape(resets.shape + (1,) * (b.ndim - resets.ndim))
    h, out = np.asarray(h0), []
    for t in range(b.shape[0]):
        h = np.where(r[t], 0, a[t] * h) + b[t]
        out.append(h)
    return np.stack(out)


def make_inputs(seed, steps, batch, state, complex_, reset_prob, a_shape="full"):
    """Random float32/complex64 (a, b, resets, h0) drawn with numpy: no compile per example."""
    rng = np.random.default_rng(seed)
    shape = (steps, batch, state)
    a_full = shape if a_shape == "full" else (state,)
    a = rng.uniform(0.3, 1.0, a_full)
    b = rng.normal(size=shape)
    h0 = rng.normal(size=(batch, state))
    if complex_:
        a = a * np.exp(1j * rng.uniform(-3, 3, a_full))
        b = b + 1j * rng.normal(size=shape)
        h0 = h0 + 1j * rng.normal(size=h0.shape)
    dtype = np.complex64 if complex_ else np.float32
    resets = rng.random((steps, batch)) < reset_prob
    return (jnp.asarray(a, dtype), jnp.asarray(b, dtype), jnp.asarray(resets), jnp.asarray(h0, dtype))


@functools.cache
def jitted_scan(method, chunk_size=16):
    return jax.jit(functools.partial(reset_scan, method=method, chunk_size=chunk_size))


def rel_err(x, y):
    x, y = np.asarray(x), np.asarray(y)
    return np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-6)


@pytest.mark.parametrize("method", PARALLEL)
@pytest.mark.parametrize("steps", [1, 7, 130])
@pytest.mark.parametrize("complex_", [False, True])
@given(
    seed=st.integers(0, 2**16),
    reset_prob=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    reset_first=st.booleans(),
)
def test_methods_match_reference(method, steps, complex_, seed, reset_prob, reset_first):
    a, b, resets, h0 = make_inputs(seed, steps, 3, 4, complex_, reset_prob)
    if reset_first:
        resets = resets.at[0].set(True)
    ref = reference(a, b, resets, h0)
    seq = jitted_scan("sequential")(a, b, resets, h0)
    out = jitted_scan(method)(a, b, resets, h0)
    assert out.shape == b.shape and out.dtype == b.dtype
    assert rel_err(seq, ref) < 1e-5
    assert rel_err(out, ref) < 1e-5


@functools.cache
def jitted_grad(method):
    def loss(a, b, resets, h0, w):
        h = reset_scan(a, b, resets, h0, method=method, chunk_size=8)
        return jnp.sum(jnp.real(h * w) + jnp.imag(h) ** 2)

    return jax.jit(jax.grad(loss, argnums=(0, 1, 3)))


@pytest.mark.parametrize("method", PARALLEL)
@pytest.mark.parametrize("steps", [1, 40])
@pytest.mark.parametrize("complex_", [False, True])
@given(seed=st.integers(0, 2**16), reset_prob=st.sampled_from([0.0, 0.2, 1.0]))
def test_gradients_match_sequential(method, steps, complex_, seed, reset_prob):
    a, b, resets, h0 = make_inputs(seed, steps, 2, 3, complex_, reset_prob)
    w = jnp.asarray(np.random.default_rng(seed + 1).normal(size=b.shape), jnp.float32)
    grads = jitted_grad(method)(a, b, resets, h0, w)
    ref = jitted_grad("sequential")(a, b, resets, h0, w)
    for g, r in zip(grads, ref, strict=True):
        assert rel_err(g, r) < 1e-5


@pytest.mark.parametrize("method", ["sequential", "associative", "chunked"])
def test_broadcast_decay_and_no_resets(method):
    """A per-state decay `[P]` broadcasts over time and batch; resets=None and h0=None mean none and zeros."""
    a, b, _, _ = make_inputs(3, 33, 2, 4, True, 0.0, a_shape="state")
    none = jnp.zeros((33, 2), bool)
    ref = reference(a, b, none, np.zeros((2, 4), np.complex64))
    assert rel_err(jitted_scan(method, chunk_size=5)(a, b), ref) < 1e-5


@pytest.mark.parametrize("method", PARALLEL)
def test_gradient_across_reset_is_exactly_zero(method):
    a, b, _, h0 = make_inputs(5, 24, 1, 3, True, 0.0)
    resets = jnp.zeros((24, 1), bool).at[10].set(True)

    def after(b, h0):
        return jnp.sum(jnp.abs(reset_scan(a, b, resets, h0, method=method, chunk_size=4)[10:]) ** 2)

    gb, gh0 = jax.jit(jax.grad(after, argnums=(0, 1)))(b, h0)
    assert np.all(np.asarray(gb[:10]) == 0) and np.all(np.asarray(gh0) == 0)
    assert np.all(np.asarray(gb[10:]) != 0)


def test_carry_continues_across_calls():
    """Scanning [0, T) at once == scanning [0, k) then [k, T) from the first part's last state."""
    a, b, resets, h0 = make_inputs(7, 50, 2, 3, False, 0.1)
    associative = jitted_scan("associative")
    whole, first = associative(a, b, resets, h0), associative(a[:20], b[:20], resets[:20], h0)
    second = jitted_scan("chunked", chunk_size=7)(a[20:], b[20:], resets[20:], first[-1])
    assert rel_err(jnp.concatenate([first, second]), whole) < 1e-5


def test_jit_and_vmap():
    a, b, resets, h0 = make_inputs(9, 16, 3, 2, True, 0.2)
    f = jax.jit(lambda a, b, r, h: reset_scan(a, b, r, h, method="associative"))
    per_row = jax.vmap(f, in_axes=(1, 1, 1, 0), out_axes=1)(a, b, resets, h0)
    assert rel_err(per_row, reference(a, b, resets, h0)) < 1e-5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(a=jnp.ones((5, 3)), b=jnp.ones((5, 2))), "does not broadcast"),
        (dict(a=jnp.ones((2, 5, 3)), b=jnp.ones((5, 3))), "would enlarge"),
        (dict(a=jnp.ones(3, jnp.int32), b=jnp.ones((5, 3))), "float or complex"),
        (dict(a=jnp.ones(3, jnp.complex64), b=jnp.ones((5, 3))), "complex a"),
        (dict(a=jnp.ones(3, jnp.float16), b=jnp.ones((5, 3))), "precision"),
        (dict(a=jnp.ones(3), b=jnp.ones((5, 3)), resets=jnp.ones((4,), bool)), "prefix"),
        (dict(a=jnp.ones(3), b=jnp.ones((5, 3)), h0=jnp.ones(4)), "h0 of shape"),
        (dict(a=jnp.ones(3), b=jnp.ones((5, 3)), method="fast"), "unknown method"),
        (dict(a=jnp.ones(3), b=jnp.ones((5, 3)), method="chunked", chunk_size=0), "chunk_size"),
    ],
)
def test_bad_input_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        reset_scan(**kwargs)


@functools.cache
def planar_loss_and_grads(method, reference_form):
    """Jitted (a, b, h0 planes, resets, cotangent planes) -> (loss, grads w.r.t. the planes of a, b and h0), the
    loss being <cotangent, h> over the planes; h from reset_scan_planes(method), or (reference_form) from
    the sequential complex reset_scan of the merged planes."""

    def loss(a, b, h0, resets, ct):
        if reference_form:
            h = to_planes(reset_scan(from_planes(a), from_planes(b), resets, from_planes(h0), method="sequential"))
        else:
            h = reset_scan_planes(a, b, resets, h0, method=method)
        return sum(jnp.sum(c * x) for c, x in zip(ct, h, strict=True))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))


@pytest.mark.parametrize("method", ["sequential", *PARALLEL])
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("a_shape", ["full", "state"])
@settings(max_examples=4)
@given(seed=st.integers(0, 2**16), reset_prob=st.sampled_from([0.0, 0.2, 1.0]))
def test_planes_match_complex_scan(method, complex_, a_shape, seed, reset_prob):
    a, b, resets, h0 = make_inputs(seed, 9, 3, 4, complex_, reset_prob, a_shape)
    ct = to_planes(make_inputs(seed + 1, 9, 3, 4, complex_, 0.0)[1])
    args = (to_planes(a), to_planes(b), to_planes(h0), resets, ct)
    loss, grads = planar_loss_and_grads(method, False)(*args)
    want_loss, want_grads = planar_loss_and_grads(method, True)(*args)
    assert rel_err(loss, want_loss) < 1e-5
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
        assert rel_err(got, want) < 1e-5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(a=jnp.ones(3), b=(jnp.ones((5, 3)),)), "tuple"),
        (dict(a=(jnp.ones(3),) * 3, b=(jnp.ones((5, 3)),)), "tuple"),
        (dict(a=(jnp.ones(3),), b=(jnp.ones((5, 3)),) * 2), "all complex"),
        (dict(a=(jnp.ones(3),), b=(jnp.ones((5, 3), jnp.complex64),)), "real floats"),
        (dict(a=(jnp.ones(3),) * 2, b=(jnp.ones((5, 3)), jnp.ones((5, 2)))), "differ in shape"),
        (dict(a=(jnp.ones(3),) * 2, b=(jnp.ones((5, 3), jnp.bfloat16),) * 2), "float32 or float64"),
        (dict(a=(jnp.ones(3),), b=(jnp.ones((5, 3)),), method="fast"), "unknown method"),
        (dict(a=(jnp.ones(3),), b=(jnp.ones((5, 3)),), resets=jnp.ones((4,), bool), method="pallas"), "prefix"),
    ],
)
def test_planes_bad_input_errors(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        reset_scan_planes(**kwargs)

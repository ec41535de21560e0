"""Gated DeltaNet and Gated DeltaProduct: the core contract, chunked (WY) form == recurrence, resets, the papers'
recurrence and initialisation, the eigenvalue range, bfloat16 and bad configurations."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmrl.ssm import make_core
from ssmrl.ssm.deltanet import GatedDeltaNetLayer, gated_delta_chunked, gated_delta_recurrent, write_strength
from tests.ssm import core_checks
from tests.ssm.reference import conv_reference, silu, softplus

TINY = {"d_model": 8, "n_layers": 1, "n_heads": 2, "head_dim": 4, "d_conv": 3, "chunk_size": 5}
PRODUCT = {"n_householder": 2, "eigenvalue_range": "[-1,1]"}
# chunk 5: the 12-step sequence is 3 chunks (last one padded); DeltaProduct's 24 steps are 5 chunks, the boundaries
# falling between the Householder steps of a token.
CORES = {
    "gated_deltanet": core_checks.JittedCore(make_core("gated_deltanet", **TINY)),
    "deltaproduct": core_checks.JittedCore(make_core("deltaproduct", **TINY, **PRODUCT)),
}
SHAPE = (12, 3, 5)  # (T, B, D) of core_checks.assert_modes_agree: reuses its compiled init and apply


@pytest.mark.parametrize("name", sorted(CORES))
def test_modes_agree(name):
    core_checks.assert_modes_agree(CORES[name], jax.random.key(0))


@pytest.mark.parametrize("name", sorted(CORES))
def test_reset_isolation(name):
    core_checks.assert_reset_isolation(CORES[name], jax.random.key(1))


@pytest.mark.parametrize("name", sorted(CORES))
def test_carry_stable(name):
    core_checks.assert_carry_stable(CORES[name], jax.random.key(2))


@pytest.mark.parametrize("name", sorted(CORES))
def test_reset_at_start_forgets_carry(name):
    core_checks.assert_reset_at_start_forgets_carry(CORES[name], jax.random.key(3), SHAPE)


def test_grads_finite_with_resets():
    """Resets put -inf log decays into the chunk algebra and a triangular solve: gradients stay finite (DeltaProduct:
    the same chunked code as Gated DeltaNet, on the interleaved sequence)."""
    core = CORES["deltaproduct"]
    x, resets = core_checks.random_sequence(jax.random.key(5), *SHAPE, reset_prob=0.5)
    params = core_checks.init_core(core, jax.random.key(4), x, resets)
    loss = lambda p, x: jnp.sum(core_checks.run_whole(core, p, x, resets)[1] ** 2)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert any(bool(jnp.any(g != 0)) for g in jax.tree.leaves(grads[0]))


# --- the chunked (WY) form == the recurrence --------------------------------------------------------------------


def delta_inputs(seed, steps, batch, heads=2, dk=4, dv=3, reset_prob=0.3, beta_max=2.0):
    """A random gated-delta problem (numpy): q, k (unit), v, g (log decay), beta in (0, beta_max), resets, h0."""
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    k = normal(steps, *batch, heads, dk)
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    g = -np.exp(normal(steps, *batch, heads) - 1.0)
    beta = beta_max * rng.random((steps, *batch, heads)).astype(np.float32)
    resets = rng.random((steps, *batch)) < reset_prob
    return normal(steps, *batch, heads, dk), k, normal(steps, *batch, heads, dv), g, beta, resets, \
        normal(*batch, heads, dk, dv)


@partial(jax.jit, static_argnames="chunk")
def both_forms(q, k, v, g, beta, resets, h0, chunk):
    return gated_delta_recurrent(q, k, v, g, beta, resets, h0), gated_delta_chunked(q, k, v, g, beta, resets, h0, chunk)


@settings(max_examples=10, deadline=None)
@given(
    steps=st.sampled_from([5, 12]), chunk=st.sampled_from([1, 4, 16]), seed=st.integers(0, 2**16),
    reset_prob=st.sampled_from([0.0, 0.3, 1.0]), beta_max=st.sampled_from([1.0, 2.0]),
)
def test_chunked_equals_recurrence(steps, chunk, seed, reset_prob, beta_max):
    """8 random problems at once (the batch); rows 0-1 also reset at every chunk boundary."""
    q, k, v, g, beta, resets, h0 = delta_inputs(seed, steps, (8,), reset_prob=reset_prob, beta_max=beta_max)
    resets[::chunk, :2] = True
    (o_ref, h_ref), (o, h) = both_forms(q, k, v, g, beta, resets, h0, chunk)
    core_checks.assert_close(o, o_ref, 1e-5, f"outputs, T={steps}, chunk={chunk}")
    core_checks.assert_close(h, h_ref, 1e-5, f"final state, T={steps}, chunk={chunk}")


def test_chunked_without_batch_dims():
    q, k, v, g, beta, _, h0 = delta_inputs(8, 10, ())
    resets = np.isin(np.arange(10), [0, 4, 5, 8])
    (o_ref, h_ref), (o, h) = both_forms(q, k, v, g, beta, resets, h0, 4)
    core_checks.assert_close((o, h), (o_ref, h_ref), 1e-5, "without batch dims")


def test_non_finite_inputs_reach_what_the_recurrence_reaches():
    """NaN or inf in a value, a key, beta, g or h0: the chunked form is non-finite exactly where the recurrence is
    (one value column for a value, the whole head otherwise, up to the next reset) and equal elsewhere."""
    q, k, v, g, beta, resets, h0 = delta_inputs(3, 12, (6,), reset_prob=0.0)
    resets[[0, 5, 9], 0] = resets[6, 1:] = True
    v[2, 0, 0, 1] = np.nan  # batch 0: reset at 5 stops it
    k[3, 1, 1, 2] = np.nan
    beta[4, 2, 0] = np.inf
    g[7, 3, 1] = np.nan  # after the reset at 6: reaches the end
    g[2, 4, 0] = -np.inf  # a full decay: valid, finite
    h0[1, 0, 0, 2] = np.nan  # batch 1: cleared by the reset at 6
    h0[5, 1, 3, 0] = np.inf
    (o_ref, h_ref), (o, h) = both_forms(q, k, v, g, beta, resets, h0, 4)
    for got, ref in ((o, o_ref), (h, h_ref)):
        got, ref = np.asarray(got), np.asarray(ref)
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref))
        np.testing.assert_allclose(np.where(np.isfinite(ref), got, 0.0), np.where(np.isfinite(ref), ref, 0.0),
                                   rtol=1e-5, atol=1e-5)
    assert not np.isfinite(o_ref[2:5, 0, 0, 1]).any() and np.isfinite(o_ref[2:5, 0, 0, [0, 2]]).all()
    assert np.isfinite(o_ref[5:, 0]).all() and np.isfinite(o_ref[:, 4]).all()


@pytest.mark.parametrize("chunk", [3, 16])
def test_chunked_gradients_zero_across_a_reset(chunk):
    """d(outputs from the reset on) / d(inputs before it, h0) == 0 exactly, also with a NaN h0."""
    q, k, v, g, beta, _, h0 = delta_inputs(4, 10, (2,))
    resets = np.zeros((10, 2), bool)
    resets[4] = True

    def after(inputs, h0):
        o, _ = gated_delta_chunked(*inputs, resets, h0, chunk)
        return jnp.sum(o[4:] ** 2)

    grad = jax.jit(jax.grad(after, argnums=(0, 1)))
    inputs, dh0 = grad((q, k, v, g, beta), h0)
    for d in inputs:
        np.testing.assert_array_equal(d[:4], 0.0)
        assert np.any(np.asarray(d[4:]) != 0.0)
    np.testing.assert_array_equal(dh0, 0.0)
    nan_inputs, _ = grad((q, k, v, g, beta), np.full_like(h0, np.nan))
    jax.tree.map(partial(np.testing.assert_allclose, rtol=1e-6), nan_inputs, inputs)


# --- single layers against the papers' recurrence in numpy -------------------------------------------------------


def deltaproduct_reference(params, u, resets, layer: GatedDeltaNetLayer):
    """The published recurrence step by step in float64, S `[V, K]` as in the papers, zero initial carry:
    S <- alpha_t S, then for each Householder step j: S <- S (I - beta_j k_j k_j^T) + beta_j v_j k_j^T; o = S q."""
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    steps, batch, _ = u.shape
    heads, n, dk, dv = layer.n_heads, layer.n_householder, layer.head_dim, layer.head_v_dim
    proj = np.asarray(u, np.float64) @ p["in_proj"]["kernel"]
    qkv, z, a, b = np.split(proj, np.cumsum([layer.conv_dim, heads * dv, heads]), axis=-1)
    window = np.zeros((batch, layer.d_conv - 1, layer.conv_dim))
    qkv = silu(conv_reference(p["conv1d"]["kernel"], 0.0, window, qkv, resets)[1])  # no conv bias
    q, k, v = np.split(qkv, [heads * dk, heads * dk * (1 + n)], axis=-1)
    unit = lambda x: x / np.sqrt(np.sum(x**2, axis=-1, keepdims=True) + 1e-6)
    q = unit(q.reshape(steps, batch, heads, dk)) / np.sqrt(dk)
    k = unit(k.reshape(steps, batch, n, heads, dk))
    v = v.reshape(steps, batch, n, heads, dv)
    beta = (2.0 if layer.eigenvalue_range == "[-1,1]" else 1.0) / (1.0 + np.exp(-b.reshape(steps, batch, n, heads)))
    alpha = np.exp(-np.exp(p["A_log"]) * softplus(a + p["dt_bias"]))  # [T, B, H]
    s, ys = np.zeros((batch, heads, dv, dk)), []
    for t in range(steps):
        s = alpha[t][..., None, None] * np.where(np.asarray(resets[t])[:, None, None, None], 0.0, s)
        for j in range(n):
            kj, bj = k[t, :, j][..., None, :], beta[t, :, j][..., None, None]  # [B, H, 1, K], [B, H, 1, 1]
            s = s - bj * (s @ np.swapaxes(kj, -1, -2)) @ kj + bj * v[t, :, j][..., :, None] @ kj
        o = (s @ q[t][..., None])[..., 0]  # [B, H, V]
        normed = o / np.sqrt(np.mean(o**2, axis=-1, keepdims=True) + 1e-5) * p["norm"]["scale"]
        ys.append((normed * silu(z[t].reshape(batch, heads, dv))).reshape(batch, heads * dv))
    return np.stack(ys) @ p["out_proj"]["kernel"]


LAYERS = {
    "gated_deltanet": GatedDeltaNetLayer(d_model=6, n_heads=2, head_dim=3, d_conv=3, chunk_size=3),
    "deltaproduct_3_neg": GatedDeltaNetLayer(
        d_model=6, n_heads=2, head_dim=3, d_conv=3, chunk_size=4, n_householder=3, eigenvalue_range="[-1,1]"
    ),
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_equals_published_recurrence(name):
    layer = LAYERS[name]
    u = jax.random.normal(jax.random.key(9), (7, 2, 6))
    resets = jnp.zeros((7, 2), bool).at[3, 0].set(True)
    carry = layer.initialize_carry((2,))
    params = jax.jit(layer.init)(jax.random.key(10), carry, u, resets)
    params = {"params": {**params["params"], "dt_bias": params["params"]["dt_bias"] + 2.0}}  # alpha well below 1
    _, y = jax.jit(layer.apply)(params, carry, u, resets)
    reference = deltaproduct_reference(params["params"], u, resets, layer)
    np.testing.assert_allclose(y, reference, rtol=2e-4, atol=2e-5)


def test_deltaproduct_with_one_householder_step_is_gated_deltanet():
    x, resets = core_checks.random_sequence(jax.random.key(11), *SHAPE)
    core = CORES["gated_deltanet"]
    params = core_checks.init_core(core, jax.random.key(12), x, resets)
    product = make_core("deltaproduct", **TINY, n_householder=1)
    _, y = core_checks.run_whole(core, params, x, resets)
    _, y_product = jax.jit(product.apply)(params, product.initialize_carry((SHAPE[1],)), x, resets)
    np.testing.assert_array_equal(y_product, y)


# --- eigenvalue range, initialisation, dtypes --------------------------------------------------------------------


@pytest.mark.parametrize(("eigenvalue_range", "high"), [("[0,1]", 1.0), ("[-1,1]", 2.0)])
def test_eigenvalue_range(eigenvalue_range, high):
    """beta in (0, 1), or (0, 2) for "[-1,1]": the eigenvalue 1 - beta of I - beta k k^T in (0, 1) or (-1, 1)."""
    logits = jnp.linspace(-12.0, 12.0, 101)
    beta = np.asarray(write_strength(logits, eigenvalue_range), np.float64)
    assert np.all(beta > 0) and np.all(beta < high) and beta.max() > 0.999 * high and beta.min() < 1e-4
    k = np.array([0.6, 0.8])
    eigenvalues = np.stack([np.linalg.eigvalsh(np.eye(2) - b * np.outer(k, k)) for b in beta])
    assert np.all(eigenvalues > 1 - high) and np.all(eigenvalues <= 1.0 + 1e-12)
    assert eigenvalues.min() < (-0.999 if high == 2.0 else 1e-4)


def test_init_follows_reference():
    layer = GatedDeltaNetLayer(d_model=32, n_heads=512, head_dim=2, d_conv=4, n_householder=2, chunk_size=4)
    carry = layer.initialize_carry((1,))
    p = jax.jit(layer.init)(jax.random.key(13), carry, jnp.zeros((1, 1, 32)), jnp.zeros((1, 1), bool))["params"]
    a = np.exp(np.asarray(p["A_log"], np.float64))
    assert a.shape == (512,) and np.all(a >= 0.0) and np.all(a <= 16.0 + 1e-4) and abs(np.mean(a) - 8.0) < 0.6
    dt = softplus(np.asarray(p["dt_bias"], np.float64))
    assert np.all(dt >= 0.001 * (1 - 1e-4)) and np.all(dt <= 0.1 * (1 + 1e-4))
    assert set(p["conv1d"]) == {"kernel"} and np.max(np.abs(p["conv1d"]["kernel"])) <= 0.5  # no bias, +-1/sqrt(4)
    assert p["conv1d"]["kernel"].shape == (4, 512 * (2 + 2 * (2 + 4)))  # q, n keys, n values of size 2 K
    np.testing.assert_array_equal(p["norm"]["scale"], np.ones(4))  # one scale [V], shared by the heads
    assert "bias" not in p["in_proj"] and "bias" not in p["out_proj"]


@pytest.mark.parametrize("name", sorted(CORES))
def test_bfloat16_encoder(name):
    """dtype=bfloat16 (the encoder's dtype only): float32 carry and outputs near float32 ones."""
    core = make_core(name, **TINY, **(PRODUCT if name == "deltaproduct" else {}), dtype="bfloat16")
    x, resets = core_checks.random_sequence(jax.random.key(14), *SHAPE)
    params = core_checks.init_core(CORES[name], jax.random.key(15), x, resets)
    carry = core.initialize_carry((SHAPE[1],))
    carry_16, y_16 = jax.jit(core.apply)(params, carry, x, resets)
    _, y_32 = core_checks.run_whole(CORES[name], params, x, resets)
    assert [c.dtype for c in jax.tree.leaves(carry_16)] == [jnp.float32] * len(jax.tree.leaves(carry))
    core_checks.assert_close(y_16, y_32, 5e-2, "bfloat16 vs float32 outputs")


@pytest.mark.parametrize(
    ("name", "cfg", "match"),
    [
        ("gated_deltanet", {"eigenvalue_range": "[0,2]"}, r"unknown eigenvalue_range '\[0,2\]'; accepted"),
        ("deltaproduct", {"eigenvalue_range": [0, 2]}, r"unknown eigenvalue_range \[0, 2\]"),
        ("deltaproduct", {"n_householder": 0}, "n_householder"),
        ("gated_deltanet", {"head_dim": 0}, "head_dim"),
        ("gated_deltanet", {"chunk_size": 0}, "chunk_size"),
        ("gated_deltanet", {"a_min": 2.0, "a_max": 1.0}, "a_min"),
        ("deltaproduct", {"dt_min": 0.5, "dt_max": 0.1}, "dt_min"),
    ],
)
def test_bad_config_raises(name, cfg, match):
    with pytest.raises(ValueError, match=match):
        make_core(name, **cfg).initialize_carry((1,))


def test_gated_deltanet_has_no_householder_option():
    with pytest.raises(ValueError, match="no option"):
        make_core("gated_deltanet", n_householder=2)

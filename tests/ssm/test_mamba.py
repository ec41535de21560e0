"""Mamba and Mamba-2 cores: the core contract, the reset-aware conv, SSD == recurrence, and the papers' inits.

Mamba-2 is checked with both eigenvalue ranges: the published [0,1] and Grazzi et al.'s [-1,1] (2 exp(dt A) - 1).
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmrl.ssm import make_core
from ssmrl.ssm.causal_conv import CausalConv
from ssmrl.ssm.mamba import MambaLayer, dt_bias_init
from ssmrl.ssm.mamba2 import Mamba2Layer, log_transition, segment_sums, ssd_chunked, ssd_recurrent
from tests.ssm import core_checks
from tests.ssm.reference import conv_reference, conv_silu, silu, softplus

RANGES = ("[0,1]", "[-1,1]")
MAMBA2 = {"d_model": 8, "n_layers": 2, "d_state": 4, "head_dim": 4, "n_groups": 2, "chunk_size": 5}
CORES = {
    "mamba": core_checks.JittedCore(make_core("mamba", d_model=8, n_layers=2, d_state=4, d_conv=3)),
    # chunk 5: the 12-step sequence is 3 chunks (last one padded), the 4-step chunks are one chunk each.
    "mamba2": core_checks.JittedCore(make_core("mamba2", **MAMBA2)),
    "mamba2[-1,1]": core_checks.JittedCore(make_core("mamba2", **MAMBA2, eigenvalue_range="[-1,1]")),
}
SHAPE = (12, 3, 5)  # (T, B, D) of core_checks.assert_modes_agree: reuses its compiled init and apply


@pytest.mark.parametrize("name", sorted(CORES))
def test_modes_agree(name):
    core_checks.assert_modes_agree(CORES[name], jax.random.key(0))


@pytest.mark.parametrize("name", sorted(CORES))
def test_reset_isolation(name):
    core_checks.assert_reset_isolation(CORES[name], jax.random.key(1))


@pytest.mark.parametrize("name", ["mamba", "mamba2"])  # the carry's structure does not depend on the range
def test_carry_stable(name):
    core_checks.assert_carry_stable(CORES[name], jax.random.key(2))


@pytest.mark.parametrize("name", sorted(CORES))
def test_reset_at_start_forgets_carry(name):
    core_checks.assert_reset_at_start_forgets_carry(CORES[name], jax.random.key(3), SHAPE)


@pytest.mark.parametrize("name", ["mamba2", "mamba2[-1,1]"])
def test_mamba2_grads_finite_with_resets(name):
    """Resets put -inf log decays into the SSD segment sums: gradients must stay finite (no 0 * inf)."""
    core = CORES[name]
    x, resets = core_checks.random_sequence(jax.random.key(5), *SHAPE, reset_prob=0.5)
    params = core_checks.init_core(core, jax.random.key(4), x, resets)
    loss = lambda p, x: jnp.sum(core_checks.run_whole(core, p, x, resets)[1] ** 2)
    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_mamba2_bfloat16():
    """dtype=bfloat16 (projections in bfloat16; the SSD, the carry, the residual stream in float32): with the same
    parameters, float32 outputs and carry within 5% of float32 (2.5% measured over 6 seeds), finite float32 gradients;
    the modes still agree and resets still isolate gradients."""
    core = core_checks.JittedCore(make_core("mamba2", **MAMBA2, dtype="bfloat16"))
    reference = CORES["mamba2"]
    x, resets = core_checks.random_sequence(jax.random.key(8), *SHAPE)
    params = core_checks.init_core(reference, jax.random.key(9), x, resets)
    carry_16, y_16 = core_checks.run_whole(core, params, x, resets)
    carry_32, y_32 = core_checks.run_whole(reference, params, x, resets)
    assert y_16.dtype == jnp.float32
    assert all(c.dtype == jnp.float32 for c in jax.tree.leaves(carry_16))
    core_checks.assert_close((y_16, carry_16), (y_32, carry_32), 5e-2, "bfloat16 vs float32")
    grads = jax.jit(jax.grad(lambda p: jnp.sum(core_checks.run_whole(core, p, x, resets)[1] ** 2)))(params)
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    core_checks.assert_modes_agree(core, jax.random.key(10), rtol=1e-2)
    core_checks.assert_reset_isolation(core, jax.random.key(11))


# --- the reset-aware causal conv -------------------------------------------------------------------------------


CONV = CausalConv(features=3, width=4)
CONV_PARAMS = CONV.init(jax.random.key(5), jnp.zeros((1, 3, 3)), jnp.zeros((2, 1, 3)), jnp.zeros((2, 1), bool))
conv_apply = jax.jit(CONV.apply)


@settings(max_examples=10, deadline=None)
@given(steps=st.sampled_from([1, 6]), seed=st.integers(0, 2**16))
def test_conv_equals_rolling_buffer_reference(steps, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, 2, 3)).astype(np.float32)
    window = rng.standard_normal((2, 3, 3)).astype(np.float32)
    resets = rng.random((steps, 2)) < 0.3
    new_window, y = conv_apply(CONV_PARAMS, window, x, resets)
    p = CONV_PARAMS["params"]
    ref_window, ref_y = conv_reference(np.asarray(p["kernel"]), np.asarray(p["bias"]), window, x, resets)
    np.testing.assert_allclose(y, ref_y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_window, ref_window, rtol=1e-6)


@pytest.mark.parametrize("reset_at", [0, 2, 4])
def test_conv_window_cleared_on_reset(reset_at):
    """The carried window keeps only inputs from the last reset on: zeros before it, the inputs after it."""
    x = jnp.arange(1.0, 16.0).reshape(5, 1, 3)
    window = jnp.full((1, 3, 3), 7.0)
    resets = jnp.zeros((5, 1), bool).at[reset_at].set(True)
    new_window, y = conv_apply(CONV_PARAMS, window, x, resets)
    times = np.arange(2, 5)  # the window holds times 2, 3, 4
    expected = np.where((times >= reset_at)[:, None], np.asarray(x[2:, 0]), 0.0)
    np.testing.assert_array_equal(new_window[0], expected)
    # The output at the reset reads only the current input: kernel[-1] * x + bias.
    p = CONV_PARAMS["params"]
    np.testing.assert_allclose(y[reset_at, 0], p["kernel"][-1] * x[reset_at, 0] + p["bias"], rtol=1e-6)


def test_mamba_carry_conv_cleared_on_reset():
    """MambaCore's per-layer conv windows are zero before a reset at the last step."""
    core = CORES["mamba"]
    x, _ = core_checks.random_sequence(jax.random.key(6), *SHAPE)
    resets = jnp.zeros(SHAPE[:2], bool).at[-1, 0].set(True)
    params = core_checks.init_core(core, jax.random.key(7), x, resets)
    carry, _ = core_checks.run_whole(core, params, x, resets)
    for layer in carry:  # conv window [B, d_conv-1 = 2, d_inner]
        assert np.all(np.asarray(layer.conv[0, 0]) == 0.0) and np.any(np.asarray(layer.conv[0, 1]) != 0.0)
        assert np.all(np.asarray(layer.conv[1]) != 0.0)


# --- SSD: chunked algorithm == reset_scan recurrence ------------------------------------------------------------


def ssd_inputs(seed, steps, batch, heads=3, p=2, n=4, reset_prob=0.3):
    """Random SSD problem (numpy, so no per-shape compiles): x, dt, a, b, c, resets, h0."""
    rng = np.random.default_rng(seed)
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    dt = softplus(normal(steps, *batch, heads)).astype(np.float32)
    a = -np.exp(normal(heads))
    resets = rng.random((steps, *batch)) < reset_prob
    return normal(steps, *batch, heads, p), dt, a, normal(steps, *batch, heads, n), normal(steps, *batch, heads, n), \
        resets, normal(*batch, heads, p, n)


@partial(jax.jit, static_argnames=("chunk", "eigenvalue_range"))
def ssd_both(x, dt, a, b, c, resets, h0, chunk, eigenvalue_range="[0,1]"):
    return (ssd_recurrent(x, dt, a, b, c, resets, h0, eigenvalue_range=eigenvalue_range),
            ssd_chunked(x, dt, a, b, c, resets, h0, chunk_size=chunk, eigenvalue_range=eigenvalue_range))


@pytest.mark.parametrize("eigenvalue_range", RANGES)
@pytest.mark.parametrize(("steps", "chunk"), [(13, 4), (12, 3), (6, 1), (7, 16), (1, 4)])
def test_ssd_chunked_equals_recurrence(steps, chunk, eigenvalue_range):
    """16 random problems at once (the batch); rows 0-3 also reset at every chunk boundary."""
    x, dt, a, b, c, resets, h0 = ssd_inputs(steps * 100 + chunk, steps, (16,))
    resets[::chunk, :4] = True
    (y_ref, h_ref), (y, h) = ssd_both(x, dt, a, b, c, resets, h0, chunk, eigenvalue_range)
    what = f"T={steps}, chunk={chunk}, {eigenvalue_range}"
    core_checks.assert_close(y, y_ref, 1e-5, f"SSD outputs, {what}")
    core_checks.assert_close(h, h_ref, 1e-5, f"SSD final state, {what}")


@settings(max_examples=10, deadline=None)
@given(steps=st.sampled_from([9, 24]), chunk=st.sampled_from([4, 8]), reset_prob=st.sampled_from([0.0, 0.1, 0.5]),
       seed=st.integers(0, 2**16))
def test_ssd_chunked_equals_recurrence_negative_transitions(steps, chunk, reset_prob, seed):
    """[-1,1]: chunked == recurrent with random resets, and with transitions of both signs (checked to occur)."""
    x, dt, a, b, c, resets, h0 = ssd_inputs(seed, steps, (8,), reset_prob=reset_prob)
    assert np.any(2 * np.exp(dt * a) - 1 < 0) and np.any(2 * np.exp(dt * a) - 1 > 0)
    (y_ref, h_ref), (y, h) = ssd_both(x, dt, a, b, c, resets, h0, chunk, "[-1,1]")
    core_checks.assert_close((y, h), (y_ref, h_ref), 1e-5, f"SSD [-1,1], T={steps}, chunk={chunk}")


def test_ssd_negative_transitions_equal_numpy_recurrence():
    """ssd_chunked in [-1,1] against h_t = (2 exp(dt_t a) - 1) h_{t-1} + dt_t x_t B_t^T (zeroed on reset),
    y_t = h_t C_t, looped in float64."""
    x, dt, a, b, c, resets, h0 = ssd_inputs(3, 11, (2,))
    _, (y, h_last) = ssd_both(x, dt, a, b, c, resets, h0, 4, "[-1,1]")
    h, ys = h0.astype(np.float64), []
    for t in range(11):
        h = np.where(resets[t][:, None, None, None], 0.0, h)
        h = (2 * np.exp(dt[t] * a) - 1)[..., None, None] * h + (dt[t][..., None] * x[t])[..., None] * b[t][..., None, :]
        ys.append(np.einsum("bhpn,bhn->bhp", h, c[t]))
    np.testing.assert_allclose(y, np.stack(ys), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h_last, h, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("eigenvalue_range", RANGES)
def test_ssd_without_batch_dims(eigenvalue_range):
    x, dt, a, b, c, _, h0 = ssd_inputs(8, 10, ())
    resets = np.isin(np.arange(10), [0, 4, 5, 8])
    (y_ref, h_ref), (y, h) = ssd_both(x, dt, a, b, c, resets, h0, 4, eigenvalue_range)
    core_checks.assert_close((y, h), (y_ref, h_ref), 1e-5, f"SSD without batch dims, {eigenvalue_range}")


def test_ssd_exactly_zero_transition_is_finite():
    """2 exp(dt a) - 1 = 0 exactly (dt a = -log 2): the chunked form floors |a| and stays finite, gradients too."""
    x, dt, a, b, c, resets, h0 = ssd_inputs(4, 8, (2,), reset_prob=0.0)
    a = np.full_like(a, -1.0)
    dt[3] = np.float32(np.log(2.0))
    assert np.any(2 * np.exp(dt * a) - 1 == 0)
    (y_ref, h_ref), (y, h) = ssd_both(x, dt, a, b, c, resets, h0, 4, "[-1,1]")
    core_checks.assert_close((y, h), (y_ref, h_ref), 1e-5, "SSD with a zero transition")
    grad = jax.grad(lambda dt: jnp.sum(ssd_both(x, dt, a, b, c, resets, h0, 4, "[-1,1]")[1][0] ** 2))(dt)
    assert np.all(np.isfinite(grad))


def test_segment_sums():
    log_a = jnp.array([0.5, -1.0, -jnp.inf, 2.0])
    s = np.asarray(segment_sums(log_a))
    assert np.all(np.isneginf(s[np.triu_indices(4, 1)]))
    np.testing.assert_allclose(np.diag(s), 0.0)
    assert s[1, 0] == -1.0 and s[3, 3] == 0.0 and s[3, 2] == 2.0 and np.isneginf(s[2, 1]) and np.isneginf(s[3, 0])


# --- single layers against a direct transcription of the papers' equations --------------------------------------


def mamba_reference(params, u, resets, d_conv):
    """Mamba's equations step by step in float64, u `[T, B, D]`, zero initial carry."""
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), params)
    steps, batch, _ = u.shape
    d_inner, n = p["A_log"].shape
    rank = p["dt_proj"]["kernel"].shape[0]
    x, z = np.split(np.asarray(u, np.float64) @ p["in_proj"]["kernel"], 2, axis=-1)
    x = conv_silu(params["conv1d"], np.zeros((batch, d_conv - 1, d_inner)), x, resets)
    dt, b, c = np.split(x @ p["x_proj"]["kernel"], [rank, rank + n], axis=-1)
    delta = softplus(dt @ p["dt_proj"]["kernel"] + p["dt_proj"]["bias"])
    a = -np.exp(p["A_log"])
    h, ys = np.zeros((batch, d_inner, n)), []
    for t in range(steps):
        h = np.where(np.asarray(resets[t])[:, None, None], 0.0, h)
        h = np.exp(delta[t][..., None] * a) * h + (delta[t] * x[t])[..., None] * b[t][:, None, :]
        ys.append(((h @ c[t][..., None])[..., 0] + p["D"] * x[t]) * silu(z[t]))
    return np.stack(ys) @ p["out_proj"]["kernel"]


def mamba2_reference(params, u, resets, layer: Mamba2Layer):
    """Mamba-2's equations step by step in float64, u `[T, B, D]`, zero initial carry."""
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), params)
    steps, batch, _ = u.shape
    d_inner, heads, g, n, hd = layer.d_inner, layer.n_heads, layer.n_groups, layer.d_state, layer.head_dim
    proj = np.asarray(u, np.float64) @ p["in_proj"]["kernel"]
    z, xbc, dt = np.split(proj, [d_inner, 2 * d_inner + 2 * g * n], axis=-1)
    xbc = conv_silu(params["conv1d"], np.zeros((batch, layer.d_conv - 1, xbc.shape[-1])), xbc, resets)
    x, b, c = np.split(xbc, [d_inner, d_inner + g * n], axis=-1)
    dt = softplus(dt + p["dt_bias"])
    a = -np.exp(p["A_log"])
    group_of = np.arange(heads) // (heads // g)
    transition = np.exp(dt * a) if layer.eigenvalue_range == "[0,1]" else 2 * np.exp(dt * a) - 1  # Grazzi et al.
    h, ys = np.zeros((batch, heads, hd, n)), []
    for t in range(steps):
        h = np.where(np.asarray(resets[t])[:, None, None, None], 0.0, h)
        xt = x[t].reshape(batch, heads, hd)
        bt = b[t].reshape(batch, g, n)[:, group_of]
        ct = c[t].reshape(batch, g, n)[:, group_of]
        h = transition[t][..., None, None] * h + (dt[t][..., None] * xt)[..., None] * bt[:, :, None, :]
        y = np.einsum("bhpn,bhn->bhp", h, ct) + p["D"][:, None] * xt
        gated = (y.reshape(batch, d_inner) * silu(z[t])).reshape(batch, g, -1)
        normed = gated / np.sqrt(np.mean(gated**2, axis=-1, keepdims=True) + 1e-5)
        ys.append(normed.reshape(batch, d_inner) * p["norm"]["scale"])
    return np.stack(ys) @ p["out_proj"]["kernel"]


LAYERS = {
    "mamba": (MambaLayer(d_model=6, d_state=3, d_conv=3), mamba_reference),
    **{
        name: (
            layer,
            lambda params, u, resets, d_conv, layer=layer: mamba2_reference(params, u, resets, layer),
        )
        for name, layer in (
            (f"mamba2{'' if r == '[0,1]' else r}",
             Mamba2Layer(d_model=6, d_state=3, d_conv=3, head_dim=3, n_groups=2, chunk_size=3, eigenvalue_range=r))
            for r in RANGES
        )
    },
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_equals_published_equations(name):
    layer, reference = LAYERS[name]
    u = jax.random.normal(jax.random.key(9), (7, 2, 6))
    resets = jnp.zeros((7, 2), bool).at[3, 0].set(True)
    carry = layer.initialize_carry((2,))
    params = jax.jit(layer.init)(jax.random.key(10), carry, u, resets)
    _, y = jax.jit(layer.apply)(params, carry, u, resets)
    np.testing.assert_allclose(y, reference(params["params"], u, resets, layer.d_conv), rtol=2e-4, atol=2e-5)


# --- initialisation ---------------------------------------------------------------------------------------------


def test_dt_bias_init_is_inverse_softplus_of_log_uniform():
    dt = softplus(np.asarray(dt_bias_init(0.002, 0.2, 1e-4)(jax.random.key(11), (4096,)), np.float64))
    assert np.all(dt >= 0.002 * (1 - 1e-4)) and np.all(dt <= 0.2 * (1 + 1e-4))
    u = (np.log(dt) - math.log(0.002)) / (math.log(0.2) - math.log(0.002))  # uniform[0, 1] if log-uniform
    assert abs(np.mean(u) - 0.5) < 0.02 and abs(np.var(u) - 1 / 12) < 0.01
    floored = softplus(np.asarray(dt_bias_init(1e-6, 1e-3, 1e-4)(jax.random.key(12), (4096,)), np.float64))
    assert np.min(floored) >= 1e-4 * (1 - 1e-3) and np.max(floored) <= 1e-3 * (1 + 1e-4)


def init_params(layer, d_model):
    carry = layer.initialize_carry((1,))
    return jax.jit(layer.init)(jax.random.key(13), carry, jnp.zeros((1, 1, d_model)), jnp.zeros((1, 1), bool))


def test_mamba_init_follows_paper():
    p = init_params(MambaLayer(d_model=32, d_state=5, d_conv=4, dt_min=0.002, dt_max=0.2), 32)["params"]
    d_inner, rank = 64, 2  # expand 2, dt_rank = ceil(32 / 16)
    np.testing.assert_allclose(-np.exp(p["A_log"]), -np.tile(np.arange(1.0, 6.0), (d_inner, 1)), rtol=1e-6)
    np.testing.assert_array_equal(p["D"], np.ones(d_inner))
    dt = softplus(np.asarray(p["dt_proj"]["bias"], np.float64))
    assert dt.shape == (d_inner,) and np.all(dt >= 0.002 * (1 - 1e-4)) and np.all(dt <= 0.2 * (1 + 1e-4))
    assert p["dt_proj"]["kernel"].shape == (rank, d_inner) and np.max(np.abs(p["dt_proj"]["kernel"])) <= rank**-0.5
    assert np.max(np.abs(p["conv1d"]["kernel"])) <= 0.5  # +-1/sqrt(d_conv)


@pytest.mark.parametrize("eigenvalue_range", RANGES)
def test_mamba2_init_follows_paper(eigenvalue_range):
    """The published init in both ranges (Grazzi et al. keep it); its transitions at dt = softplus(dt_bias) lie in
    the stated range: in [0,1] positive, in [-1,1] of both signs (exp(dt A) < 1/2 for dt A > log 2)."""
    layer = Mamba2Layer(d_model=256, d_state=2, head_dim=1, chunk_size=4, eigenvalue_range=eigenvalue_range)
    p = init_params(layer, 256)["params"]  # 512 heads
    a = np.exp(np.asarray(p["A_log"], np.float64))
    assert np.all(a >= 1.0 - 1e-5) and np.all(a <= 16.0 + 1e-4) and abs(np.mean(a) - 8.5) < 0.6
    np.testing.assert_array_equal(p["D"], np.ones(512))
    dt = softplus(np.asarray(p["dt_bias"], np.float64))
    assert np.all(dt >= 0.001 * (1 - 1e-4)) and np.all(dt <= 0.1 * (1 + 1e-4))
    log_abs, negative = log_transition(jnp.asarray(dt, jnp.float32), -jnp.exp(p["A_log"]), eigenvalue_range)
    assert np.all(np.asarray(log_abs) <= 0.0)  # |eigenvalue| <= 1
    assert np.any(negative) == (eigenvalue_range == "[-1,1]")
    np.testing.assert_allclose(np.exp(log_abs) * np.where(negative, -1, 1),
                               np.exp(-dt * a) if eigenvalue_range == "[0,1]" else 2 * np.exp(-dt * a) - 1, atol=1e-6)


# --- bad configurations -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cfg", "match"),
    [
        ("mamba", {"d_conv": 0}, "d_conv"),
        ("mamba", {"dt_min": 0.5, "dt_max": 0.1}, "dt_min"),
        ("mamba2", {"d_model": 8, "head_dim": 3}, "head_dim"),
        ("mamba2", {"d_model": 8, "head_dim": 4, "n_groups": 3}, "n_groups"),
        ("mamba2", {"chunk_size": 0}, "chunk_size"),
        ("mamba2", {"a_min": 0.0}, "a_min"),
        ("mamba2", {"eigenvalue_range": "[-2,2]"}, "eigenvalue_range"),
    ],
)
def test_bad_config_raises(name, cfg, match):
    with pytest.raises(ValueError, match=match):
        make_core(name, **cfg).initialize_carry((1,))

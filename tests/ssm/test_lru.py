"""LRU core: the core contract, the published recurrence, and the paper's ring initialisation, in both eigenvalue
ranges (the published [0,1] and Grazzi et al.'s [-1,1]: signed radius 2 exp(-exp(nu_log)) - 1)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmrl.ssm import make_core
from ssmrl.ssm.lru import LRUCore, LRULayer, lru_eigenvalues, ring_nu_log, ring_theta_log
from tests.ssm import core_checks

RANGES = ("[0,1]", "[-1,1]")
CORES = {
    r: core_checks.JittedCore(
        make_core("lru", d_model=8, n_layers=2, state_size=6, r_min=0.5, r_max=0.99, eigenvalue_range=r)
    )
    for r in RANGES
}


@pytest.mark.parametrize("eigenvalue_range", RANGES)
def test_modes_agree(eigenvalue_range):
    core_checks.assert_modes_agree(CORES[eigenvalue_range], jax.random.key(0))


@pytest.mark.parametrize("eigenvalue_range", RANGES)
def test_reset_isolation(eigenvalue_range):
    core_checks.assert_reset_isolation(CORES[eigenvalue_range], jax.random.key(1))


def test_carry_stable():  # the carry's structure does not depend on the range
    core_checks.assert_carry_stable(CORES["[0,1]"], jax.random.key(2))


@pytest.mark.parametrize("eigenvalue_range", RANGES)
def test_layer_equals_published_recurrence(eigenvalue_range):
    """h_t = lambda h_{t-1} + gamma (B u_t) (zeroed on reset), y_t = Re(C h_t) + D u_t, in complex128 numpy, with
    lambda = r exp(i exp(theta_log)), r = exp(-exp(nu_log)) ([0,1]) or 2 exp(-exp(nu_log)) - 1 ([-1,1])."""
    layer = LRULayer(d_model=3, state_size=4, r_min=0.4, r_max=0.9, max_phase=math.pi,
                     eigenvalue_range=eigenvalue_range)
    rng = np.random.default_rng(0)
    u = rng.standard_normal((6, 2, 3)).astype(np.float32)
    resets = np.zeros((6, 2), bool)
    resets[2, 0] = True
    h0 = (rng.standard_normal((2, 4)) + 1j * rng.standard_normal((2, 4))).astype(np.complex64)
    params = jax.jit(layer.init)(jax.random.key(3), h0, u, resets)
    h_last, y = jax.jit(layer.apply)(params, h0, u, resets)
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), params["params"])
    radius = np.exp(-np.exp(p["nu_log"]))
    radius = radius if eigenvalue_range == "[0,1]" else 2 * radius - 1
    lam = radius * np.exp(1j * np.exp(p["theta_log"]))
    b = np.exp(p["gamma_log"])[:, None] * (p["B_re"] + 1j * p["B_im"])
    c = p["C_re"] + 1j * p["C_im"]
    h, ys = h0.astype(np.complex128), []
    for t in range(6):
        h = np.where(resets[t][:, None], 0.0, lam * h) + u[t] @ b.T
        ys.append((h @ c.T).real + p["D"] * u[t])
    np.testing.assert_allclose(y, np.stack(ys), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h_last, h, rtol=1e-4, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(
    r_min=st.floats(0.0, 0.95), width=st.floats(0.01, 1.0), max_phase=st.floats(0.01, 2 * math.pi),
    seed=st.integers(0, 2**16),
)
def test_ring_initialisation_bounds(r_min, width, max_phase, seed):
    r_max = min(1.0, r_min + width)
    k_r, k_p = jax.random.split(jax.random.key(seed))
    lam = np.asarray(lru_eigenvalues(ring_nu_log(k_r, 256, r_min, r_max), ring_theta_log(k_p, 256, max_phase)))
    radius, phase = np.abs(lam), np.angle(lam) % (2 * np.pi)
    assert np.all(radius >= r_min - 1e-5) and np.all(radius <= r_max + 1e-5)
    assert np.all(phase <= max_phase + 1e-4)


def test_ring_initialisation_distribution():
    """|lambda|^2 is uniform in [r_min^2, r_max^2], the phase uniform in [0, max_phase] (moments of 4096 draws)."""
    k_r, k_p = jax.random.split(jax.random.key(4))
    r_min, r_max, max_phase = 0.5, 0.95, 3.0
    radius_sq = np.exp(-2 * np.exp(np.asarray(ring_nu_log(k_r, 4096, r_min, r_max), np.float64)))
    u = (radius_sq - r_min**2) / (r_max**2 - r_min**2)
    phase = np.exp(np.asarray(ring_theta_log(k_p, 4096, max_phase), np.float64)) / max_phase
    for v in (u, phase):
        assert abs(np.mean(v) - 0.5) < 0.02 and abs(np.var(v) - 1 / 12) < 0.01


@pytest.mark.parametrize("eigenvalue_range", RANGES)
def test_init_eigenvalues_in_range(eigenvalue_range):
    """With phases in [0, 0.1]: "[0,1]" gives eigenvalues near [r_min, r_max] on the positive real axis, "[-1,1]"
    a signed radius in [2 r_min - 1, 2 r_max - 1] (both signs); |lambda| <= 1 and gamma = sqrt(1 - |lambda|^2)."""
    layer = LRULayer(d_model=4, state_size=512, r_min=0.2, r_max=0.9, max_phase=0.1, eigenvalue_range=eigenvalue_range)
    p = jax.jit(layer.init)(jax.random.key(6), layer.initialize_carry((1,)), jnp.zeros((1, 1, 4)),
                            jnp.zeros((1, 1), bool))["params"]
    lam = np.asarray(lru_eigenvalues(p["nu_log"], p["theta_log"], eigenvalue_range), np.complex128)
    signed = np.abs(lam) * np.sign(lam.real)  # phase <= 0.1: the sign of the real part is the radius's
    lo, hi = (0.2, 0.9) if eigenvalue_range == "[0,1]" else (2 * 0.2 - 1, 2 * 0.9 - 1)
    assert np.all(signed >= lo - 1e-5) and np.all(signed <= hi + 1e-5) and np.all(np.abs(lam) <= 1.0)
    assert np.any(lam.real < 0) == (eigenvalue_range == "[-1,1]")
    np.testing.assert_allclose(np.exp(np.asarray(p["gamma_log"], np.float64)), np.sqrt(1 - np.abs(lam) ** 2),
                               rtol=1e-4)


def test_layer_init_follows_paper():
    """gamma = sqrt(1 - |lambda|^2); B ~ N(0, 1/(2H)), C ~ N(0, 1/N) per part; D ~ N(0, 1)."""
    h, n = 64, 128
    layer = LRULayer(d_model=h, state_size=n, r_min=0.2, r_max=0.9)
    carry = layer.initialize_carry((1,))
    init = jax.jit(layer.init)
    p = init(jax.random.key(5), carry, jnp.zeros((1, 1, h)), jnp.zeros((1, 1), bool))["params"]
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), p)
    radius = np.exp(-np.exp(p["nu_log"]))
    np.testing.assert_allclose(np.exp(p["gamma_log"]), np.sqrt(1 - radius**2), rtol=1e-4)
    assert np.all(radius >= 0.2 - 1e-6) and np.all(radius <= 0.9 + 1e-6)
    for name, std in (("B_re", (2 * h) ** -0.5), ("B_im", (2 * h) ** -0.5), ("C_re", n**-0.5), ("C_im", n**-0.5)):
        assert abs(np.std(p[name]) / std - 1) < 0.05, name
    assert p["B_re"].shape == (n, h) and p["C_re"].shape == (h, n) and abs(np.std(p["D"]) - 1) < 0.3


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"r_min": 0.9, "r_max": 0.5}, "r_min"),
        ({"r_max": 1.5}, "r_max"),
        ({"max_phase": 0.0}, "max_phase"),
        ({"eigenvalue_range": "[-1,0]"}, "eigenvalue_range"),
        ({"n_layers": 0}, "n_layers"),
    ],
)
def test_bad_config_raises(cfg, match):
    with pytest.raises(ValueError, match=match):
        make_core("lru", **cfg).initialize_carry((1,))


def test_bad_activation_raises():
    core = LRUCore(d_model=4, n_layers=1, state_size=2, activation="relu")
    x = jnp.zeros((2, 1, 3))
    with pytest.raises(ValueError, match="activation"):
        core.init(jax.random.key(0), core.initialize_carry((1,)), x)

"""S4 (DPLR) and S4D cores: initialisations, convolution mode == recurrent mode, and the core contract."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssmrl.ssm import S4DSSM, S4SSM, S4Core, S4DCore, make_core
from ssmrl.ssm.hippo import hippo_legs
from ssmrl.ssm.s4 import discretize_dplr, dplr_convolution, dplr_recurrence, s4_nplr_init
from ssmrl.ssm.s4d import S4D_INITS, diagonal_convolution, diagonal_recurrence
from ssmrl.ssm.siso import conv_or_recurrence
from tests.ssm import core_checks

H, N = 4, 16
CORES = {
    "s4": S4Core(d_model=8, n_layers=2, state_size=8),
    "s4d": S4DCore(d_model=8, n_layers=2, state_size=8, discretization="bilinear"),
}
MODES = {
    "s4": (jax.jit(dplr_convolution), jax.jit(dplr_recurrence)),
    "s4d": (jax.jit(diagonal_convolution), jax.jit(diagonal_recurrence)),
}


def full(x):
    return np.concatenate([x, x.conj()], axis=-1)


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(b))))


@functools.cache
def system(kind: str, lambda_init: str = "inv", discretization: str = "zoh"):
    """The discretised system of a freshly initialised layer (H channels, state size N), log steps spread wide."""
    if kind == "s4":
        layer = S4SSM(H, N)
    else:
        layer = S4DSSM(H, N, lambda_init=lambda_init, discretization=discretization)
    u = jnp.zeros((3, 1, H))
    params = layer.init(jax.random.key(0), layer.initialize_carry((1,)), u, jnp.zeros((3, 1), bool))
    params["params"]["log_step"] = jnp.linspace(np.log(1e-3), np.log(0.5), H)
    return layer.apply(params, method=lambda m: m.discrete_system())


@given(n=st.integers(1, 24))
def test_nplr_reconstructs_hippo_legs(n):
    lam, p, b, v = s4_nplr_init(2 * n)
    v_f = np.concatenate([v, v.conj()], axis=1)
    a, b_legs = hippo_legs(2 * n)
    np.testing.assert_allclose(v_f.conj().T @ v_f, np.eye(2 * n), atol=1e-10)
    a_s4 = np.diag(full(lam)) - np.outer(full(p), full(p).conj())
    np.testing.assert_allclose(v_f @ a_s4 @ v_f.conj().T, a, atol=1e-9)
    np.testing.assert_allclose(v_f @ full(b), b_legs, atol=1e-10)
    np.testing.assert_allclose(lam.real, -0.5, atol=1e-10)
    assert np.all(lam.imag > 0)


@pytest.mark.parametrize("lambda_init", S4D_INITS)
def test_s4d_eigenvalues_match_formulas(lambda_init):
    layer = S4DSSM(3, N, lambda_init=lambda_init)
    params = layer.init(jax.random.key(0), layer.initialize_carry((1,)), jnp.zeros((2, 1, 3)), jnp.zeros((2, 1), bool))
    lam = layer.apply(params, method=lambda m: m.lam)
    n = np.arange(N // 2)
    if lambda_init == "legs":  # the eigenvalues of HiPPO-LegS's normal part in the upper half plane
        p = np.sqrt(np.arange(N) + 0.5)
        eig = np.linalg.eigvals(hippo_legs(N)[0] + np.outer(p, p))
        expected = eig[eig.imag > 0]
        expected = expected[np.argsort(-expected.imag)]
    else:
        expected = {
            "lin": -0.5 + 1j * np.pi * n,
            "inv": -0.5 + 1j * (N / np.pi) * (N / (2 * n + 1) - 1),
            "real": -(n + 1.0) + 0j,
        }[lambda_init]
    np.testing.assert_allclose(np.asarray(lam), np.tile(expected, (3, 1)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("steps", [3, 16, 33])
@pytest.mark.parametrize("kind", ["s4", "s4d"])
def test_convolution_equals_recurrence(kind, steps):
    """No resets: the FFT convolution (with a zero or a random carry) equals the recurrence, outputs and state."""
    convolution, recurrence = MODES[kind]
    sys = system(kind)
    kx, kh = jax.random.split(jax.random.key(steps))
    u = jax.random.normal(kx, (steps, 2, H))
    h0 = jax.random.normal(kh, (2, H, N // 2, 2)) @ jnp.array([1.0, 1j])
    for carry in (jnp.zeros_like(h0), h0):
        h_c, y_c = convolution(sys, u, carry)
        h_r, y_r = recurrence(sys, u, jnp.zeros((steps, 2), bool), carry)
        assert rel_err(y_c, y_r) < 1e-4
        assert rel_err(h_c, h_r) < 1e-4


@pytest.mark.parametrize("discretization", ["zoh", "bilinear"])
@pytest.mark.parametrize("lambda_init", S4D_INITS)
def test_s4d_convolution_equals_recurrence_every_init(lambda_init, discretization):
    convolution, recurrence = MODES["s4d"]
    sys = system("s4d", lambda_init, discretization)
    u = jax.random.normal(jax.random.key(1), (33, 2, H))
    h0 = jax.random.normal(jax.random.key(2), (2, H, N // 2)).astype(jnp.complex64)
    h_c, y_c = convolution(sys, u, h0)
    h_r, y_r = recurrence(sys, u, jnp.zeros((33, 2), bool), h0)
    assert rel_err(y_c, y_r) < 1e-4
    assert rel_err(h_c, h_r) < 1e-4


def test_s4_convolution_gradients_equal_recurrence_gradients():
    """Gradients with respect to the continuous parameters and the carry agree too, down to time steps of 1e-3
    (where A_bar^L is close to I and a naive I - A_bar^L would cancel)."""
    lam, p, b, _ = s4_nplr_init(N)
    tile = lambda x: jnp.asarray(np.tile(x, (H, 1)), jnp.complex64)
    kc, ku, kh, kw = jax.random.split(jax.random.key(7), 4)
    params = {
        "lam": tile(lam), "p": tile(p), "b": tile(b),
        "c": jax.random.normal(kc, (H, N // 2, 2)) @ jnp.array([1.0, 1j]),
        "log_step": jnp.linspace(np.log(1e-3), np.log(0.5), H),
    }
    u = jax.random.normal(ku, (16, 2, H))
    h0 = jax.random.normal(kh, (2, H, N // 2, 2)) @ jnp.array([1.0, 1j])
    weights = jax.random.normal(kw, (16, 2, H))

    def loss(params, h0, mode):
        sys = discretize_dplr(params["lam"], params["p"], params["b"], params["c"], jnp.exp(params["log_step"]))
        if mode == "convolution":
            h, y = dplr_convolution(sys, u, h0)
        else:
            h, y = dplr_recurrence(sys, u, jnp.zeros((16, 2), bool), h0)
        return jnp.sum(weights * y) + jnp.sum(jnp.abs(h) ** 2)

    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    g_conv, g_rec = grad(params, h0, "convolution"), grad(params, h0, "recurrence")
    for name in params:
        assert rel_err(g_conv[0][name], g_rec[0][name]) < 1e-4, name
    assert rel_err(g_conv[1], g_rec[1]) < 1e-4


def _mark_convolution(system, u, h0):
    return h0, jnp.zeros(u.shape)


def _mark_recurrence(system, u, resets, h0):
    return h0, jnp.ones(u.shape)


@pytest.mark.parametrize(
    "steps, reset_at, expected", [(6, None, 0.0), (6, 0, 0.0), (6, 3, 1.0), (6, 5, 1.0), (1, None, 1.0)]
)
def test_mode_dispatch(steps, reset_at, expected):
    """Convolution mode unless a reset falls after step 0 (or T = 1); a reset at step 0 zeroes that carry."""
    resets = jnp.zeros((steps, 2), bool)
    if reset_at is not None:
        resets = resets.at[reset_at, 0].set(True)
    h0 = jnp.ones((2, 3, 4), jnp.complex64)
    h, y = conv_or_recurrence(_mark_convolution, _mark_recurrence, {}, jnp.zeros((steps, 2, 3)), resets, h0)
    assert np.all(np.asarray(y) == expected)
    assert np.all(np.asarray(h[0]) == (0.0 if reset_at == 0 else 1.0)) and np.all(np.asarray(h[1]) == 1.0)


def test_s4_long_sequence_large_state():
    """S4 at its published size (N = 64) on a long sequence: convolution == recurrence, where a diagonalised
    LegS recurrence would be useless in float32."""
    layer = S4SSM(2, 64)
    u = jax.random.normal(jax.random.key(3), (1000, 1, 2))
    params = layer.init(jax.random.key(0), layer.initialize_carry((1,)), u[:2], jnp.zeros((2, 1), bool))
    sys = layer.apply(params, method=lambda m: m.discrete_system())
    h0 = layer.initialize_carry((1,))
    h_c, y_c = dplr_convolution(sys, u, h0)
    h_r, y_r = dplr_recurrence(sys, u, jnp.zeros((1000, 1), bool), h0)
    assert rel_err(y_c, y_r) < 1e-4
    assert rel_err(h_c, h_r) < 1e-4


@pytest.mark.parametrize("name", sorted(CORES))
def test_whole_chunked_step_agree_with_resets(name):
    core_checks.assert_modes_agree(CORES[name], jax.random.key(0), rtol=1e-4)


@pytest.mark.parametrize("name", sorted(CORES))
def test_whole_chunked_step_agree_without_resets(name):
    """Resets only at step 0: the whole sequence and the chunks run in convolution mode (chunks after the first
    with a nonzero carry), the steps in recurrent mode; all agree."""
    core = CORES[name]
    x = jax.random.normal(jax.random.key(4), (12, 3, 5))  # the shapes of assert_modes_agree: shared compilations
    resets = jnp.zeros((12, 3), bool).at[0, 0].set(True)
    params = core_checks.init_core(core, jax.random.key(1), x, resets)
    carry, y = core_checks.run_whole(core, params, x, resets)
    carry_c, y_c = core_checks.run_chunked(core, params, x, resets, [4, 4, 4])
    step = jax.jit(core.apply)
    carry_s, ys = core.initialize_carry((3,)), []
    for t in range(12):
        carry_s, y_t = step(params, carry_s, x[t : t + 1], resets[t : t + 1])
        ys.append(y_t)
    core_checks.assert_close(y_c, y, 1e-4, "chunked vs whole outputs")
    core_checks.assert_close(jnp.concatenate(ys), y, 1e-4, "step vs whole outputs")
    core_checks.assert_close(carry_c, carry, 1e-4, "chunked vs whole carry")
    core_checks.assert_close(carry_s, carry, 1e-4, "step vs whole carry")


@pytest.mark.parametrize("name", sorted(CORES))
def test_reset_isolation(name):
    core_checks.assert_reset_isolation(CORES[name], jax.random.key(5))


@pytest.mark.parametrize("name", sorted(CORES))
def test_carry_stable_under_jit_and_vmap(name):
    core_checks.assert_carry_stable(CORES[name], jax.random.key(6))


def test_registered():
    assert isinstance(make_core("s4", d_model=4), S4Core)
    assert isinstance(make_core("s4d", d_model=4, lambda_init="lin"), S4DCore)


@pytest.mark.parametrize(
    "name, cfg, match",
    [
        ("s4", {"state_size": 7}, "even"),
        ("s4d", {"lambda_init": "legt"}, "legt"),
        ("s4d", {"discretization": "euler"}, "euler"),
        ("s4", {"activation": "gelu"}, "gelu"),
        ("s4d", {"dt_min": 0.5, "dt_max": 0.1}, "dt_min"),
    ],
)
def test_bad_config_is_a_clear_error(name, cfg, match):
    core = make_core(name, d_model=4, n_layers=1, **cfg)
    x = jnp.zeros((2, 1, 3))
    with pytest.raises(ValueError, match=match):
        core.init(jax.random.key(0), core.initialize_carry((1,)), x)

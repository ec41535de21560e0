"""S5 and the GRU/LSTM baselines: initialisation facts and the core-interface properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssmrl.ssm import GRUCore, LSTMCore, S5Core, make_core
from ssmrl.ssm.hippo import hippo_legs, hippo_legs_nplr, hippo_normal_eig
from ssmrl.ssm.s5 import S5SSM, discretize, s5_eigenbasis
from tests.ssm.core_checks import JittedCore, assert_carry_stable, assert_modes_agree, assert_reset_isolation

SMALL_S5 = dict(d_model=8, n_layers=2, state_size=8)
CORES = {
    "s5": JittedCore(S5Core(**SMALL_S5)),
    "s5-bilinear-glu": JittedCore(S5Core(**SMALL_S5, blocks=2, discretization="bilinear", activation="full_glu")),
    "gru": JittedCore(GRUCore(8)),
    "lstm": JittedCore(LSTMCore(8)),
}


@pytest.mark.parametrize("n", [1, 4, 16, 64])
def test_hippo_normal_eigendecomposition(n):
    a_normal, p, _ = hippo_legs_nplr(n)
    a, _ = hippo_legs(n)
    np.testing.assert_allclose(a_normal - np.outer(p, p), a, atol=1e-10)
    lam, v = hippo_normal_eig(n)
    assert np.all(lam.real < 0)
    np.testing.assert_allclose(lam.real, -0.5, atol=1e-10)
    np.testing.assert_allclose(v @ np.diag(lam) @ v.conj().T, a_normal, atol=1e-8)
    np.testing.assert_allclose(v.conj().T @ v, np.eye(n), atol=1e-10)


def test_conjugate_symmetric_half_keeps_one_of_each_pair():
    lam, _ = hippo_normal_eig(16)
    kept, dropped = lam[:8], lam[8:]
    assert np.all(kept.imag > 0)
    np.testing.assert_allclose(np.sort_complex(kept.conj()), np.sort_complex(dropped), atol=1e-10)


def test_block_diagonal_initialisation():
    lam, v = s5_eigenbasis(state_size=16, blocks=4, conj_sym=True)
    assert lam.shape == (8,) and v.shape == (16, 8)
    block_lam, _ = hippo_normal_eig(4)
    np.testing.assert_allclose(lam, np.tile(block_lam[:2], 4))
    assert np.all(v[4:, :2] == 0) and np.all(v[:4, 2:] == 0)


def test_discretisations_agree_for_small_steps():
    lam = jnp.asarray([-0.5 + 2j, -0.5 - 1j])
    b = jnp.ones((2, 3), jnp.complex64)
    step = jnp.full(2, 1e-3)
    zoh, zoh_b = discretize(lam, b, step, "zoh")
    bil, bil_b = discretize(lam, b, step, "bilinear")
    np.testing.assert_allclose(zoh, jnp.exp(lam * step), rtol=1e-6)
    np.testing.assert_allclose(bil, zoh, rtol=1e-6)
    np.testing.assert_allclose(bil_b, zoh_b, rtol=1e-3)


def test_s5_parameters_match_paper_initialisation():
    ssm = S5SSM(d_model=4, state_size=8, dt_min=0.01, dt_max=0.1)
    params = ssm.init(jax.random.key(0), jnp.zeros((1, 4), jnp.complex64), jnp.zeros((3, 1, 4)), None)["params"]
    lam, _ = hippo_normal_eig(8)
    np.testing.assert_allclose(params["lambda_re"], lam[:4].real, rtol=1e-6)
    np.testing.assert_allclose(params["lambda_im"], lam[:4].imag, rtol=1e-6)
    step = np.exp(params["log_step"])
    assert params["B"].shape == (4, 4, 2) and params["C"].shape == (4, 4, 2) and params["D"].shape == (4,)
    assert np.all((step >= 0.01) & (step <= 0.1))


@pytest.mark.parametrize("name", list(CORES))
def test_whole_chunked_and_step_modes_agree(name):
    assert_modes_agree(CORES[name], jax.random.key(0))


@pytest.mark.parametrize("name", list(CORES))
def test_reset_isolates_gradients(name):
    assert_reset_isolation(CORES[name], jax.random.key(1))


@pytest.mark.parametrize("name", ["s5", "lstm"])
def test_carry_stable_under_jit_and_vmap(name):
    assert_carry_stable(CORES[name], jax.random.key(2))


@pytest.mark.parametrize("method", ["associative", "chunked"])
def test_s5_scan_methods_agree(method):
    x = jax.random.normal(jax.random.key(0), (33, 2, 3))
    resets = jax.random.bernoulli(jax.random.key(1), 0.1, (33, 2))
    ref_core = S5Core(**SMALL_S5, scan_method="sequential")
    carry = ref_core.initialize_carry((2,))
    params = ref_core.init(jax.random.key(2), carry, x, resets)
    _, ref = ref_core.apply(params, carry, x, resets)
    _, y = S5Core(**SMALL_S5, scan_method=method).apply(params, carry, x, resets)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


def test_registry_and_bad_inputs():
    assert isinstance(make_core("s5", d_model=4), S5Core)
    with pytest.raises(ValueError, match="known cores"):
        make_core("transformer-xl")
    with pytest.raises(ValueError, match="no option"):
        make_core("gru", hidden=3)
    core = S5Core(**SMALL_S5)
    x = jnp.zeros((4, 2, 3))
    carry = core.initialize_carry((2,))
    params = core.init(jax.random.key(0), carry, x, None)
    with pytest.raises(ValueError, match="resets must have shape"):
        core.apply(params, carry, x, jnp.zeros((4, 3), bool))
    with pytest.raises(ValueError, match="carry of shape"):
        core.apply(params, core.initialize_carry((5,)), x, None)
    with pytest.raises(ValueError, match="state_size 6 is not divisible by blocks 4"):
        S5Core(d_model=4, state_size=6, blocks=4).init(jax.random.key(0), carry, x, None)
    with pytest.raises(ValueError, match="unknown discretization"):
        S5Core(**SMALL_S5, discretization="euler").init(jax.random.key(0), carry, x, None)


@pytest.mark.parametrize("name", ["s5", "lru"])
def test_bfloat16_activations(name):
    """dtype=bfloat16: bf16 outputs within 3% of float32 with the same parameters, complex64 carry, float32
    gradients; the modes still agree and resets still isolate gradients."""
    core = JittedCore(make_core(name, **SMALL_S5, dtype="bfloat16"))
    reference = JittedCore(make_core(name, **SMALL_S5))
    x = jax.random.normal(jax.random.key(0), (17, 3, 5))
    resets = jax.random.bernoulli(jax.random.key(1), 0.2, (17, 3))
    carry = reference.initialize_carry((3,))
    params = reference.init(jax.random.key(2), carry, x, resets)
    carry_16, y_16 = core.apply(params, carry, x, resets)
    _, y_32 = reference.apply(params, carry, x, resets)
    assert y_16.dtype == jnp.bfloat16
    assert all(c.dtype == jnp.complex64 for c in jax.tree.leaves(carry_16))
    assert float(jnp.max(jnp.abs(y_16 - y_32)) / jnp.max(jnp.abs(y_32))) < 3e-2
    grads = jax.jit(jax.grad(lambda p: jnp.sum(core.apply(p, carry, x, resets)[1].astype(jnp.float32) ** 2)))(params)
    assert all(g.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert_modes_agree(core, jax.random.key(3), rtol=1e-2)
    assert_reset_isolation(core, jax.random.key(4))

"""The fused Pallas scan (interpret mode on CPU): values and VJP equal the sequential reference; it lowers to Triton.

The checks are those of scripts/check_scan_kernel.py, on tiny shapes, with hypothesis over shapes, reset rates,
decay layouts and kernel layouts (block sizes that split the state into several programs and force padding,
unroll factors that leave a remainder).
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmrl.ssm.kernels import kernel_compiles, on_gpu, pallas_reset_scan
from ssmrl.ssm.scan import auto_method, reset_scan, xla_method
from tests.scripts import load_script

check = load_script("check_scan_kernel")

try:  # interpret mode of the installed jax must run the kernel at all, else every test here is moot
    pallas_reset_scan(jnp.ones((2, 1)), jnp.ones((2, 1)), interpret=True).block_until_ready()
except Exception as err:  # noqa: BLE001 - any failure: skip with the reason
    pytest.skip(f"Pallas interpret mode cannot run the kernel with jax {jax.__version__}: {err}",
                allow_module_level=True)


@settings(max_examples=10)  # the suite's default; scripts/check_scan_kernel.py runs the full grid
@given(
    seed=st.integers(0, 2**16),
    size=st.sampled_from([(1, 1, 1), (5, 2, 3), (17, 3, 7), (40, 2, 16)]),
    complex_=st.booleans(),
    a_shape=st.sampled_from(["full", "state", "time"]),
    reset_rate=st.sampled_from([0.0, 0.2, 1.0]),
    reset_dims=st.sampled_from([1, 2]),
    h0=st.booleans(),
    layout=st.sampled_from([None, (4, 3), (8, 2), (16, 1)]),
)
def test_values_and_gradients_match_reference(seed, size, complex_, a_shape, reset_rate, reset_dims, h0, layout):
    case = check.Case(*size, complex_, a_shape, reset_rate, reset_dims, h0, layout)
    errors = check.check_case(case, seed)
    assert set(errors) == ({"h", "da", "db", "dh0"} if h0 else {"h", "da", "db"})
    assert all(e < check.TOL for e in errors.values()), errors


def test_check_script_cases_pass_and_table(capsys, monkeypatch):
    """The script's main: a table row per case, exit 0; a failing comparison makes it exit 1."""
    monkeypatch.setattr(check, "cases", lambda gpu: [check.Case(3, 1, 2, True, layout=(2, 2))])
    assert check.main([]) == 0
    out = capsys.readouterr().out
    assert "| complex64 | 3 | 1 | 2 | full |" in out and "| ok |" in out
    assert check.main(["--tol", "-1"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_reset_zeroes_gradient_into_the_past():
    """A reset at t=4 of row 0: nothing after it depends on earlier b or on h0 of that row; row 1 still does."""
    rng = np.random.default_rng(0)
    a, b, h0 = (jnp.asarray(rng.uniform(0.5, 1.0, s), jnp.float32) for s in ((9, 2, 3), (9, 2, 3), (2, 3)))
    resets = jnp.zeros((9, 2), bool).at[4, 0].set(True)
    grads = jax.grad(lambda b, h0: jnp.sum(pallas_reset_scan(a, b, resets, h0, block_size=2)[4:]), (0, 1))(b, h0)
    gb, gh0 = (np.asarray(g) for g in grads)
    assert np.all(gb[:4, 0] == 0) and np.all(gh0[0] == 0)
    assert np.all(gb[:4, 1] != 0) and np.all(gh0[1] != 0) and np.all(gb[4:] != 0)


def test_vmap_and_broadcast_h0():
    """vmap over a batch axis (the grid gains an axis) and h0 of shape [P] broadcast over the batch."""
    case = check.Case(6, 3, 4, True, reset_rate=0.3)
    a, b, resets, _, _ = check.make_inputs(case, 1)
    h0 = jnp.asarray([1.0, -2.0, 0.5j, 3.0], jnp.complex64)
    kernel = jax.vmap(lambda a, b, r: pallas_reset_scan(a, b, r, h0, block_size=2, unroll=2), (1, 1, 1), 1)
    want = reset_scan(a, b, resets, h0, method="sequential")
    assert check.rel_err(kernel(a, b, resets), want) < check.TOL


def test_unsupported_dtype_falls_back_or_errors():
    b = jnp.ones((4, 3), jnp.float16)
    with pytest.raises(ValueError, match="float16 is not supported; supported: float32, complex64"):
        pallas_reset_scan(b, b)
    out = reset_scan(jnp.full((3,), 0.5, jnp.float16), b, method="pallas")
    np.testing.assert_allclose(np.asarray(out[:, 0], np.float32), [1.0, 1.5, 1.75, 1.875])
    with pytest.raises(ValueError, match="block_size must be a power of 2, got 12"):
        pallas_reset_scan(jnp.ones((4, 3)), jnp.ones((4, 3)), block_size=12)
    with pytest.raises(ValueError, match="unroll must be >= 1, got 0"):
        pallas_reset_scan(jnp.ones((4, 3)), jnp.ones((4, 3)), unroll=0)


@pytest.mark.parametrize(("complex_", "a_shape", "reset_dims"), [(False, "full", 1), (True, "state", 2)])
def test_lowers_to_triton_for_cuda(complex_, a_shape, reset_dims):
    """Pallas -> Triton IR lowering of forward and backward for a CUDA target runs here without a GPU (PTX
    compilation and running are left to the GPU: scripts/check_scan_kernel.py)."""
    case = check.Case(5, 2, 64, complex_, a_shape, 0.2, reset_dims, True, (32, 2))
    a, b, resets, h0, ct = check.make_inputs(case, 0)

    def vjp(a, b, resets, h0, ct):
        h, pullback = jax.vjp(lambda a, b, h0: pallas_reset_scan(a, b, resets, h0, block_size=32, unroll=2,
                                                                 interpret=False), a, b, h0)
        return h, pullback(ct)

    triton_call = "__gpu$xla.gpu.triton"
    try:
        exported = jax.export.export(
            jax.jit(vjp), platforms=["cuda"],
            disabled_checks=[jax.export.DisabledSafetyCheck.custom_call(triton_call)],
        )(a, b, resets, h0, ct)
    except RuntimeError as err:  # jax 0.11 reads the GPU's properties to lower Triton (seen with JAX_PLATFORMS=cpu)
        if "No supported GPU devices found" not in str(err):
            raise
        pytest.skip("this jax lowers Triton kernels only with a GPU present; scripts/check_scan_kernel.py checks there")
    text = exported.mlir_module()
    assert text.count(f"@{triton_call}") == 2
    assert 'name = "forward_kernel"' in text and 'name = "backward_kernel"' in text


def test_auto_picks_the_kernel_on_gpu_only():
    assert auto_method() == ("pallas" if on_gpu() and kernel_compiles() else xla_method())


@pytest.mark.skipif(on_gpu(), reason="checks the fallback where compiled Pallas cannot run")
def test_auto_keeps_xla_off_gpu():
    assert auto_method() == "sequential"
    kernel_compiles.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert kernel_compiles() is False  # compiled (not interpreted) Pallas cannot run on a CPU
    assert any("using XLA scans instead" in str(w.message) for w in caught)
    kernel_compiles.cache_clear()

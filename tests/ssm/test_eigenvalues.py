"""The eigenvalue_range option (Grazzi et al., ICLR 2025): its accepted spellings and the map s -> 2 s - 1."""

import numpy as np
import pytest

from ssmrl.ssm import make_core
from ssmrl.ssm.eigenvalues import EIGENVALUE_RANGES, check_eigenvalue_range, extend_range


@pytest.mark.parametrize(
    ("value", "name"),
    [("[0,1]", "[0,1]"), ("[-1, 1]", "[-1,1]"), ([-1, 1], "[-1,1]"), ((0, 1), "[0,1]"), ((-1.0, 1.0), "[-1,1]")],
)
def test_accepted_spellings(value, name):
    """Strings with or without spaces, and the list YAML makes of an unquoted [-1,1]."""
    assert check_eigenvalue_range("X", value) == name


@pytest.mark.parametrize("value", ["[-2,2]", "negative", [0, 2], (1,), None, 1])
def test_bad_values_name_the_accepted_ones(value):
    with pytest.raises(ValueError, match=r"X: unknown eigenvalue_range .*; accepted: \('\[0,1\]', '\[-1,1\]'\)"):
        check_eigenvalue_range("X", value)


@pytest.mark.parametrize("name", ["mamba2", "lru"])
def test_cores_refuse_a_bad_range(name):
    with pytest.raises(ValueError, match="unknown eigenvalue_range '0..1'"):
        make_core(name, eigenvalue_range="0..1").initialize_carry((1,))


def test_extend_range():
    s = np.linspace(0.0, 1.0, 5)
    np.testing.assert_array_equal(extend_range(s, "[0,1]"), s)
    np.testing.assert_array_equal(extend_range(s, "[-1,1]"), [-1.0, -0.5, 0.0, 0.5, 1.0])
    assert EIGENVALUE_RANGES == ("[0,1]", "[-1,1]")

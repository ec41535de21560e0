"""scripts/random_baseline.py: a uniformly random policy's first-episode returns, and its clear errors."""

import jax
import numpy as np
import pytest

from tests.layout import ROOT
from tests.scripts import load_script


@pytest.fixture(scope="module")
def script():
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "scripts"))  # its sibling import: bench_envs
        yield load_script("random_baseline")


def test_repeat_previous_random_return_is_the_analytic_one(script):
    """RepeatPrevious-Easy: uniform guesses score -0.5 in expectation (a quarter right, +1/T; the rest -1/T); the
    mean of 256 episodes lies within 4 standard errors of it, every return in [-1, 1]."""
    returns = script.first_episode_returns("RepeatPrevious-Easy", 256, jax.random.key(0), 1000)
    assert returns.shape == (256,) and np.all(np.abs(returns) <= 1.0 + 1e-5)
    assert abs(returns.mean() + 0.5) < 4 * returns.std() / np.sqrt(256), returns.mean()


def test_errors_name_the_bad_value(script):
    with pytest.raises(ValueError, match="max_steps=3"):
        script.first_episode_returns("RepeatPrevious-Easy", 2, jax.random.key(0), 3)
    with pytest.raises(ValueError, match="multi-agent"):
        script.first_episode_returns("jaxmarl/MPE_simple_v3", 2, jax.random.key(0), 10)

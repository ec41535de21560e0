"""The reliability suite's shared pieces: the `toy` trainer registered for the CLI, and a config file of it."""

import pytest

from ssmrl.algos import ALGOS
from tests.reliability import toy


@pytest.fixture(autouse=True, scope="module")
def toy_algo():
    """`algo: toy` for this folder's tests only: removed again, so other modules see the real trainers alone."""
    toy.register()
    yield
    ALGOS.pop("toy", None)


@pytest.fixture
def toy_config(tmp_path):
    def write(**fields):
        path = tmp_path / "toy.yaml"
        path.write_text(toy.config_text(**fields))
        return path

    return write

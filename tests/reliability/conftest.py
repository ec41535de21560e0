"""The reliability suite's shared pieces: the `toy` trainer registered for the CLI, and a config file of it."""

import pytest

from tests.reliability import toy


@pytest.fixture(autouse=True, scope="session")
def toy_algo():
    toy.register()


@pytest.fixture
def toy_config(tmp_path):
    def write(**fields):
        path = tmp_path / "toy.yaml"
        path.write_text(toy.config_text(**fields))
        return path

    return write

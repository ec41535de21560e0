"""Shared by the world-model tests: the `load_script` fixture (`tests.scripts.load_script`)."""

import pytest

from tests.scripts import load_script as _load


@pytest.fixture(scope="session")
def load_script():
    return _load

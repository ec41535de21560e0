"""Shared by the world-model tests: `load_script(name)` imports `scripts/<name>.py` as a module (once)."""

import functools
import importlib.util
from pathlib import Path

import pytest


@functools.cache
def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[2] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    return _load

"""Environments for the tests' fresh interpreters."""

import os

from tests.layout import ROOT


def subprocess_env(**extra: str) -> dict[str, str]:
    """This process's environment (XLA flags included) with the repository root appended to PYTHONPATH, so a
    child run from anywhere imports `tests.*`, while `ssmrl` still comes from whatever install the parent uses
    (editable or a wheel earlier on the path); `extra` overrides variables."""
    path = os.pathsep.join(p for p in (os.environ.get("PYTHONPATH", ""), str(ROOT)) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}

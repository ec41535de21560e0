"""`load_script(name)`: `scripts/<name>.py` imported as a module (scripts/ is not a package), once per session."""

import functools
import importlib.util
import sys
from pathlib import Path


@functools.cache
def load_script(name: str):
    """The module `name` from `scripts/<name>.py`, registered in `sys.modules` (dataclasses look it up)."""
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

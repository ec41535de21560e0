"""The floors of the house (docs/architecture.md): every import of an ssmrl module points to a lower floor or
stays inside its own folder, and no two modules import each other, directly or through others (lazy imports
inside functions included)."""

import ast
from pathlib import Path

import pytest

from tests.layout import FOLDERS, ROOT, modules

FLOORS = {"ssmrl.ssm": 0, "ssmrl.envs": 1, "ssmrl.rl": 2, "ssmrl.agents": 3, "ssmrl.worldmodels": 3, "ssmrl": 4}


def package_of(module: str) -> str:
    """The folder-package (a FLOORS key) that `module` belongs to."""
    return next(p for p in sorted(FLOORS, key=len, reverse=True) if module == p or module.startswith(p + "."))


def imports_of(path: Path, module: str) -> set[str]:
    """The ssmrl modules `path` imports (a `from x import y` of a submodule counts as importing x.y)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return {n for n in names if n == "ssmrl" or n.startswith("ssmrl.")}


MODULES = modules()
GRAPH = {m: {n for n in imports_of(p, m) if n in MODULES and n != m} for m, p in MODULES.items()}


def test_every_folder_is_known():
    top = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"}
    assert top == set(FOLDERS.values())


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module):
    own = package_of(module)
    for target in GRAPH[module]:
        other = package_of(target)
        if other == own or (own == "ssmrl" and target == "ssmrl"):
            continue
        assert FLOORS[other] < FLOORS[own], f"{module} (floor {FLOORS[own]}) imports {target} (floor {FLOORS[other]})"


def test_no_import_cycles():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module, path):
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if module.startswith(target + "."):  # a package's own modules may import it: it is loaded first
                continue
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*path, target]))
            if target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])

"""The repository's import layout: which folder is which `ssmrl` subpackage (pyproject's package-dir)."""

from pathlib import Path

ROOT = Path(__file__).parents[1]
FOLDERS = {"ssmrl.ssm": "ssm", "ssmrl.envs": "envs", "ssmrl.rl": "rl", "ssmrl.agents": "agents",
           "ssmrl.worldmodels": "worldmodels", "ssmrl": "ssmrl"}


def package_files() -> dict[str, Path]:
    """Every file the wheel must carry: its path inside the installed `ssmrl` -> its path in the repository."""
    files = {}
    for package, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                inside = Path(*package.split(".")[1:], path.relative_to(ROOT / folder))
                files[str(Path("ssmrl", inside))] = path
    return files


def modules() -> dict[str, Path]:
    """Every ssmrl module (dotted name) -> its source file."""
    found = {}
    for installed, path in package_files().items():
        if path.suffix == ".py":
            parts = Path(installed).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found

"""The wheel that `python -m build` makes, installed into an empty folder outside the repository and imported
from a temporary directory with no site-packages hooks (so the editable install cannot answer): it carries every
module and file of the package folders, installs `ssmrl` alone at the top level, and every module imports."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.layout import ROOT, modules, package_files

pytest.importorskip("build")

CHECK = """
import importlib, importlib.util, json, sys
names = json.loads(sys.argv[1])
shadowed = [n for n in ("ssm", "envs", "agents", "worldmodels", "rl") if importlib.util.find_spec(n) is not None]
outside = [n for n in names if not importlib.import_module(n).__file__.startswith(sys.argv[2])]
print(json.dumps({"shadowed": shadowed, "outside": outside}))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the working tree's files (tracked or not ignored: no stale build/ folder
    can leak into it) and installed with pip into an empty target folder."""
    work = tmp_path_factory.mktemp("wheel")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout.splitlines()
    for name in listed:
        if (ROOT / name).is_file():
            (work / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, work / "src" / name)
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(work / "dist"),
                    str(work / "src")], check=True, capture_output=True, cwd=work)
    (wheel,) = (work / "dist").glob("ssmrl-*.whl")
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    return target


def test_wheel_installs_only_ssmrl_at_the_top(installed):
    top = {p.name for p in installed.iterdir() if not p.name.endswith(".dist-info") and p.name != "bin"}
    assert top == {"ssmrl"}


def test_wheel_carries_every_file(installed):
    carried = {str(p.relative_to(installed)) for p in (installed / "ssmrl").rglob("*") if p.is_file()}
    assert set(package_files()) - carried == set()


def test_every_module_imports_from_the_wheel(installed, tmp_path):
    """`python -S`: no site-packages .pth hooks (the editable finder); dependencies come from PYTHONPATH."""
    deps = sysconfig.get_paths()["purelib"]
    result = subprocess.run(
        [sys.executable, "-S", "-c", CHECK, json.dumps(sorted(modules())), str(installed)],
        cwd=tmp_path, env={"PYTHONPATH": f"{installed}:{deps}", "JAX_PLATFORMS": "cpu"},
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"shadowed": [], "outside": []}

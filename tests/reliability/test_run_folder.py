"""Run folders are never shared or silently replaced; Ctrl-C keeps the last checkpoint; a damaged latest checkpoint
falls back to the newest intact one."""

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssmrl.checkpoint import Checkpointer
from ssmrl.cli import main, resolve_config
from ssmrl.folder import LOCK_NAME
from ssmrl.runner import RunFolder
from tests.layout import ROOT
from tests.reliability.toy import make_toy
from tests.subprocesses import subprocess_env

TRAIN = ("import sys; from tests.reliability import toy; toy.register(); from ssmrl.cli import main; "
         "sys.exit(main(sys.argv[1:]))")
HOLD = ("import sys, time; from ssmrl.folder import run_folder_lock; lock = run_folder_lock(sys.argv[1]); "
        "lock.__enter__(); print('locked', flush=True); time.sleep(120)")


def spawn(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=subprocess_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in ("wall_time_s", "sps")} for r in csv.DictReader(f)]


def test_second_run_is_refused_and_ctrl_c_keeps_the_last_checkpoint(toy_config, tmp_path, capfd):
    """A live `ssmrl train` holds its folder: a second run exits 2 naming it; SIGINT stops the first within a
    couple of updates with exit 130, the resume command and its checkpoints intact; resume then completes."""
    config, out = toy_config(num_updates=60, seconds=0.05), tmp_path / "run"
    first = spawn(TRAIN, "train", str(config), f"out_dir={out}", "checkpoint_every=20")  # SIGINT mid-interval
    try:
        wait_for(lambda: (out / "checkpoints" / "20").is_dir() or first.poll() is not None)
        assert main(["train", str(config), f"out_dir={out}"]) == 2
        assert f"in use by process {first.pid} on host" in capfd.readouterr().err
        first.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, err = first.communicate(timeout=30)
        assert time.monotonic() - sent < 3.0
    finally:
        first.kill()
    assert first.returncode == 130, err
    assert "Traceback" not in err and f"resume with: ssmrl train {out / 'config.yaml'} resume=true" in err
    kept = Checkpointer(out / "checkpoints").all_steps()
    assert kept in ([20], [20, 40])
    assert main(["train", str(out / "config.yaml"), "resume=true"]) == 0
    assert f"resuming from checkpoint {kept[-1]}" in capfd.readouterr().err
    assert [int(r["update"]) for r in rows(out)] == list(range(1, 61))


def test_lock_of_a_killed_process_is_reported_and_taken_over(toy_config, tmp_path, capfd):
    holder = spawn(HOLD, str(tmp_path / "run"))
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", str(toy_config()), f"out_dir={tmp_path / 'run'}"]) == 2
        assert f"process {holder.pid}" in capfd.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", str(toy_config()), f"out_dir={tmp_path / 'run'}"]) == 0
    err = capfd.readouterr().err
    assert f"process {holder.pid}" in err and "ended without releasing it" in err
    assert (tmp_path / "run" / LOCK_NAME).read_text() == ""  # released cleanly: nothing to report next time


def test_non_empty_folder_is_refused_unless_resume_or_overwrite(toy_config, tmp_path, capfd):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["train", str(toy_config()), f"out_dir={out}"]) == 2
    assert "is not empty (it holds notes.txt)" in capfd.readouterr().err
    assert main(["train", str(toy_config()), f"out_dir={out}", "overwrite=true"]) == 2  # not a run folder
    assert "only empties a folder written by `ssmrl train`" in capfd.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"

    (out / "notes.txt").unlink()
    assert main(["train", str(toy_config()), f"out_dir={out}"]) == 0
    assert Checkpointer(out / "checkpoints").all_steps() == [2, 4, 6]
    shutil.rmtree(out / "checkpoints")  # the old run without checkpoints: still not silently replaced
    assert main(["train", str(toy_config()), f"out_dir={out}"]) == 2
    assert "config.yaml" in capfd.readouterr().err
    assert main(["train", str(toy_config(lr=2.0)), f"out_dir={out}", "overwrite=true"]) == 0
    assert "overwrite=true: removed" in capfd.readouterr().err
    assert rows(out)[-1]["episode_return"] == "12"
    assert main(["train", str(toy_config()), f"out_dir={out}", "overwrite=true", "resume=true"]) == 2


@pytest.fixture
def finished_run(toy_config, tmp_path):
    out = tmp_path / "run"
    assert main(["train", str(toy_config()), f"out_dir={out}"]) == 0
    return out


def test_truncated_latest_checkpoint_falls_back_to_the_newest_intact_one(finished_run, capfd):
    before = rows(finished_run)
    capfd.readouterr()
    data = max((p for p in (finished_run / "checkpoints" / "6").rglob("*") if p.is_file()), key=os.path.getsize)
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert main(["train", str(finished_run / "config.yaml"), "resume=true"]) == 0
    err = capfd.readouterr().err
    assert f"checkpoint 6 is damaged: {str(data)!r} has" in err and "using checkpoint 4 instead" in err
    assert "resuming from checkpoint 4" in err and "Traceback" not in err
    assert (finished_run / "checkpoints" / "damaged" / "6").is_dir()
    assert Checkpointer(finished_run / "checkpoints").all_steps() == [2, 4, 6]
    assert rows(finished_run) == before


def test_damaged_metadata_names_the_file_and_evaluate_falls_back(finished_run, capfd):
    metadata = finished_run / "checkpoints" / "6" / "metadata" / "metadata"
    metadata.write_text("{" + " " * (len(metadata.read_text()) - 1))  # same size, not JSON
    settings, config, _ = resolve_config(str(finished_run / "config.yaml"), [])
    folder = RunFolder(finished_run, settings, config, make_toy(config))
    state, step = folder.restore()
    assert step == 4 and int(state["count"][0]) == 4
    err = capfd.readouterr().err
    assert str(metadata) in err and "using checkpoint 4 instead" in err

    (finished_run / "checkpoints" / "6.files.json").unlink()  # a checkpoint from before manifests: orbax reads it
    with Checkpointer(finished_run / "checkpoints") as checkpoints:
        step, _, _ = checkpoints.restore_newest(report=print)
    out = capfd.readouterr()
    assert step == 4 and "its metadata file" in out.out and str(metadata) in out.out
    assert "Traceback" not in out.err

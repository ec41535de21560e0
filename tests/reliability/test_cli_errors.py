"""The CLI never shows a traceback for a user error: one line, exit 2; failures exit 1 with one line."""

import errno
import os

import pytest

from ssmrl.checkpoint import Checkpointer
from ssmrl.cli import main, resolve_config
from ssmrl.config import save_yaml
from ssmrl.logger import MetricsLogger

PPO = """
algo: ppo
ppo:
  env: {name: CartPole-v1, num_envs: 4}
  core: mlp
  core_kwargs: {features: 8}
  hidden: 8
  num_steps: 16
  update_epochs: 1
  num_minibatches: 1
  total_timesteps: 128
"""


def unwritable(tmp_path):
    """A folder that cannot be created: under /sys for root (which ignores permissions), else a read-only one."""
    if os.geteuid() == 0:
        return "/sys/ssmrl-reliability/run"
    tmp_path.chmod(0o555)
    return str(tmp_path / "run")


def error(capfd) -> str:
    err = capfd.readouterr().err
    assert "Traceback" not in err
    return err


def test_evaluate_help_needs_no_run_folder(capfd):
    assert main(["evaluate", "--help"]) == 0
    out = capfd.readouterr().out
    assert "usage: ssmrl evaluate RUN_DIR" in out and "--episodes" in out and "ppo, mappo, ippo runs" in out
    assert main(["evaluate"]) == 2
    assert "give the run folder" in error(capfd)


@pytest.mark.parametrize("case", ["folder_config", "file_out_dir", "unwritable_out_dir"])
def test_bad_paths_fail_before_any_work_in_one_line(toy_config, tmp_path, capfd, case):
    config = toy_config()
    args = {
        "folder_config": ["train", str(tmp_path)],
        "file_out_dir": ["train", str(config), f"out_dir={config}"],
        "unwritable_out_dir": ["train", str(config), f"out_dir={unwritable(tmp_path)}"],
    }[case]
    assert main(args) == 2
    err = error(capfd)
    assert err.count("\n") == 1 and {"folder_config": "is a folder", "file_out_dir": "is a file, not a folder",
                                      "unwritable_out_dir": "cannot be created"}[case] in err


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    """A PPO run folder with its config and an untrained checkpoint (nothing is compiled by the tests using it)."""
    folder = tmp_path_factory.mktemp("ppo")
    (folder / "ppo.yaml").write_text(PPO)
    _, _, resolved = resolve_config(str(folder / "ppo.yaml"), [])
    save_yaml(resolved, folder / "run" / "config.yaml")
    return folder / "run"


@pytest.mark.parametrize(("out", "message"), [("{tmp}", "--out '{tmp}' is a folder"),
                                              ("{unwritable}/eval.json", "cannot be created")])
def test_evaluate_out_is_checked_before_the_checkpoint_is_read(ppo_run, tmp_path, capfd, out, message):
    values = {"tmp": str(tmp_path), "unwritable": os.path.dirname(unwritable(tmp_path))}
    assert main(["evaluate", str(ppo_run), "--out", out.format(**values)]) == 2  # there is no checkpoint either
    assert message.format(**values) in error(capfd)


def test_full_disk_says_so(toy_config, tmp_path, capfd, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "checkpoints"))

    monkeypatch.setattr(Checkpointer, "save", full)
    assert main(["train", str(toy_config()), f"out_dir={tmp_path / 'run'}"]) == 1
    err = error(capfd)
    assert "the disk is full" in err and "resume=true" in err


def test_a_cleanup_error_never_hides_the_real_one(toy_config, tmp_path, capfd, monkeypatch):
    def closed(self):
        raise OSError("handle is closed")

    monkeypatch.setattr(MetricsLogger, "_write_summaries", closed)
    assert main(["train", str(toy_config(nan_at=3)), f"out_dir={tmp_path / 'run'}"]) == 1
    err = error(capfd)
    assert "'episode_return' is nan at update 3" in err and "handle is closed" not in err
    assert Checkpointer(tmp_path / "run" / "checkpoints").all_steps() == [2]

"""`ssmrl train`: resume reproduces an uninterrupted run, clear errors, NaN stops with the last good checkpoint."""

import csv
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ssmrl.checkpoint import Checkpointer
from ssmrl.cli import main, resolve_config
from ssmrl.rl.algorithm import Algorithm
from ssmrl.runner import RunSettings, TrainingDiverged, run

TINY = """
algo: ppo
checkpoint_every: 2
num_seeds: 2
progress: false
ppo:
  env: {name: RepeatPrevious-Easy, num_envs: 4}
  core: s5
  core_kwargs: {d_model: 8, state_size: 4, n_layers: 1}
  hidden: 8
  num_steps: 16
  update_epochs: 2
  num_minibatches: 2
  total_timesteps: 256
  lr: 1.0e-3
"""
VOLATILE = {"wall_time_s", "sps"}


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.yaml"
    path.write_text(TINY)
    return path


def read_rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if k not in VOLATILE} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def full_run(config_path, tmp_path_factory):
    """The run folder of the tiny config trained to the end (tests must not write into it)."""
    full = tmp_path_factory.mktemp("runs") / "full"
    assert main(["train", str(config_path), f"out_dir={full}"]) == 0
    return full


def test_resume_reproduces_uninterrupted_run(config_path, full_run, tmp_path):
    full = full_run
    rows = read_rows(full)
    assert len(rows) == 4 * 2 and (full / "learning_curve.png").is_file() and (full / "metrics.json").is_file()

    interrupted = tmp_path / "interrupted"
    shutil.copytree(full, interrupted)
    shutil.rmtree(interrupted / "checkpoints" / "4")  # as if the run died after the checkpoint at update 2
    assert main(["train", str(config_path), f"out_dir={interrupted}", "resume=true"]) == 0
    assert read_rows(interrupted) == rows
    a, b = (Checkpointer(d / "checkpoints").restore(4) for d in (full, interrupted))
    jax.tree.map(np.testing.assert_array_equal, a, b)


def test_overrides_route_to_the_trainer(config_path, tmp_path):
    settings, config, resolved = resolve_config(str(config_path), ["core=gru", "core_kwargs={features: 8}", "seed=3"])
    assert config.core == "gru" and settings.seed == 3 and resolved["ppo"]["core"] == "gru"
    assert resolve_config(str(config_path), [])[0].out_dir == "runs/tiny"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("lrr=0.1", "unknown key 'ppo.lrr'"),
        ("num_envs=4", "unknown key 'ppo.num_envs'"),
        ("algo=ppx", "unknown algo 'ppx'"),
        ("num_seeds=0", "num_seeds must be an integer >= 1"),
        ("ppo.env.name=NoSuchEnv", "unknown env 'NoSuchEnv'"),
        ("ppo.lr=fast", "ppo.lr must be a float"),
    ],
)
def test_bad_config_is_a_clear_error(config_path, tmp_path, capfd, override, message):
    assert main(["train", str(config_path), f"out_dir={tmp_path}", override]) == 2
    assert message in capfd.readouterr().err


def run_files(run_dir) -> list:
    """(path, mtime) of every file of a run folder but its lock."""
    return sorted((p.relative_to(run_dir), p.stat().st_mtime_ns) for p in run_dir.rglob("*") if p.name != ".ssmrl.lock")


def test_existing_run_is_not_overwritten(config_path, full_run, capfd):
    args = ["train", str(config_path), f"out_dir={full_run}"]
    before = run_files(full_run)
    assert main(args) == 2
    assert "pass resume=true" in capfd.readouterr().err
    assert main([*args, "resume=true", "lr=0.5"]) == 2
    err = capfd.readouterr().err
    assert "differs" in err and "ppo.lr" in err
    assert run_files(full_run) == before


def test_nan_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    def update(state):
        count = state["count"] + 1
        loss = jnp.where(count >= 3, jnp.nan, 1.0 / count)
        return {"count": count}, {"loss": loss}

    algorithm = Algorithm(init=lambda key: {"count": jnp.zeros((), jnp.int32)}, update=update, num_updates=6,
                          steps_per_update=1)
    settings = RunSettings(algo="test", out_dir=str(tmp_path), checkpoint_every=2, progress=False, tensorboard=False)
    with pytest.raises(TrainingDiverged, match="'loss' is nan at update 3"):
        run(algorithm, settings, {"algo": "test"})
    assert Checkpointer(tmp_path / "checkpoints").latest_step() == 2

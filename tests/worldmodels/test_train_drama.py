"""Drama's loop end to end: a tiny `ssmrl train` of a drama config (2 updates), its finish hook, `ssmrl evaluate`,
the shipped configs and clear errors. The world model's parts: tests/worldmodels/test_drama.py."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from ssmrl.cli import main, resolve_config, train
from ssmrl.worldmodels.train_drama import DramaConfig, EnvConfig, ReplayConfig, build, check_config
from tests.worldmodels.test_drama import quick_compile  # noqa: F401  (autouse: XLA optimisations off here too)

CONFIGS = sorted(Path(__file__).parents[2].glob("configs/drama_*.yaml"))
WARMUP, ENVS, STEPS, UPDATES, BATCH, IMAGINE = 12, 2, 10, 2, 2, 4
TINY = [
    "progress=false", "tensorboard=false", "checkpoint_every=1", "env.name=RepeatPrevious-Easy", f"env.num_envs={ENVS}",
    "model.core_kwargs={d_model: 16, n_layers: 1, d_state: 8, head_dim: 8}", "model.hidden=16",
    "model.num_latents=4", "model.num_classes=4", "model.mlp_units=16", "model.mlp_layers=1", "model.head_units=16",
    "model.num_bins=31", f"model.batch_size={BATCH}", "model.seq_len=6", "behaviour.actor_units=16",
    "behaviour.critic_units=16", "behaviour.layers=1", f"behaviour.imagine_batch={IMAGINE}",
    "behaviour.imagine_context=3", "behaviour.imagine_horizon=4", "replay.capacity=64",
    f"replay.wm_warmup={WARMUP}", f"replay.behaviour_warmup={WARMUP}", f"total_steps={ENVS * STEPS * UPDATES}",
    f"env_steps_per_update={STEPS}", "eval.episodes=2", "eval.context=3", "eval.horizon=4",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run dir, stacked final state, metrics) of the tiny run of configs/drama_popgym_repeat_previous.yaml."""
    run_dir = tmp_path_factory.mktemp("drama") / "run"
    state, metrics = train("configs/drama_popgym_repeat_previous.yaml", [*TINY, f"out_dir={run_dir}"])
    return run_dir, state, metrics


def test_tiny_training_run(trained):
    """2 updates of 10 steps x 2 envs: random actions until the replay holds 12 env steps, then one world-model and one
    actor-critic step per iteration with DFS counts to match; finite metrics; checkpoints; the finish hook's
    imagination GIF (context + horizon frames) and eval.json."""
    run_dir, state, metrics = trained
    names = {"wm_loss", "recon_loss", "reward_loss", "terminal_loss", "dyn_loss", "rep_loss", "ac_loss",
             "policy_loss", "value_loss", "entropy", "episode_return", "wm_trained", "ac_trained"}
    assert names <= set(metrics) and all(np.isfinite(v).all() for v in metrics.values())
    trained_iterations = UPDATES * STEPS - WARMUP // ENVS + 1  # from the iteration whose row completes the warmup
    np.testing.assert_allclose(metrics["wm_trained"].sum(), trained_iterations / STEPS)
    assert int(state.replay.wm_count.sum()) == trained_iterations * BATCH
    assert int(state.replay.img_count.sum()) == trained_iterations * IMAGINE
    assert int(state.replay.size[0]) == UPDATES * STEPS and int(state.iteration[0]) == UPDATES * STEPS
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()) == ["1", "2"]
    report = json.loads((run_dir / "eval.json").read_text())
    assert len(report["imagination_mse_per_step"]) == 4 and np.isfinite(report["imagination_mse"])
    with Image.open(run_dir / "imagination.gif") as gif:
        assert gif.n_frames == 3 + 4


def test_evaluate_command(trained):
    run_dir = trained[0]
    assert main(["evaluate", str(run_dir), "--episodes", "2", "--max-steps", "200"]) == 0
    results = json.loads((run_dir / "eval_returns.json").read_text())
    assert np.asarray(results["returns"]).shape == (1, 2) and np.isfinite(results["mean"])
    assert main(["evaluate", str(run_dir), "--episodes", "0"]) == 2


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_build(path):
    """Every configs/drama_*.yaml resolves and builds (env, models, DFS rule) with the official values (MinAtar's:
    bfloat16, the official Use_amp)."""
    settings, config, _ = resolve_config(str(path), [])
    assert settings.algo == "drama" and config.total_steps == 100_000
    if "minatar" in path.stem:
        assert config.model.dtype == config.behaviour.dtype == "bfloat16"
    setup = build(config)
    assert setup.rule.count_scale == 16 / 1024
    assert setup.model.config.num_latents * setup.model.config.num_classes == 1024
    jax.eval_shape(lambda: setup.model.initial_carry((1,)))


def test_bad_settings_fail_clearly():
    with pytest.raises(ValueError, match="fewer than 1024"):
        check_config(DramaConfig(replay=ReplayConfig(wm_warmup=500, behaviour_warmup=500)))
    with pytest.raises(ValueError, match="Discrete actions"):
        build(DramaConfig(env=EnvConfig(name="Pendulum-v1")))
    with pytest.raises(ValueError, match="env_steps_per_update"):
        check_config(DramaConfig(env_steps_per_update=0))
    with pytest.raises(ValueError, match="train_every=3 must divide env_steps_per_update=100"):
        check_config(DramaConfig(train_every=3))

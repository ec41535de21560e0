"""`ssmrl evaluate`: returns of trained runs through the CLI, meta-RL curves, GIFs, and clear errors."""

import dataclasses
import json

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from ssmrl.agents.env_stack import EnvConfig, MetaConfig
from ssmrl.agents.evaluate import (
    SPLITS,
    evaluate_policy,
    first_episode_returns,
    make_evaluator,
    parse_args,
    render_episode,
    with_episodes_per_trial,
)
from ssmrl.agents.ppo import PPOConfig, make_ppo
from ssmrl.checkpoint import Checkpointer
from ssmrl.cli import main, resolve_config
from ssmrl.config import save_yaml
from ssmrl.runner import initial_state
from tests.scripts import load_script

TINY = """
algo: ppo
checkpoint_every: 1
num_seeds: {num_seeds}
progress: false
tensorboard: false
ppo:
  env: {{name: CartPole-v1, num_envs: 4{meta}}}
  core: mlp
  core_kwargs: {{features: 8}}
  hidden: 8
  num_steps: 16
  update_epochs: 1
  num_minibatches: 1
  total_timesteps: 128
"""
META = ", meta: {obs_dim: 4, episodes_per_trial: 2}"
CARTPOLE_MAX_RETURN = 500.0  # +1 per step, truncated at 500 steps


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    """Two seeds trained through the CLI for two updates of CartPole-v1: checkpoints 1 and 2."""
    folder = tmp_path_factory.mktemp("cartpole")
    (folder / "config.yaml").write_text(TINY.format(num_seeds=2, meta=""))
    assert main(["train", str(folder / "config.yaml"), f"out_dir={folder / 'run'}"]) == 0
    return str(folder / "run")


@pytest.fixture(scope="module")
def meta_run(tmp_path_factory):
    """Meta-RL CartPole (random projections, trials of 2 episodes), one seed: the run dir `ssmrl train` writes, with
    the untrained state as checkpoint 0 (training would only add compile time)."""
    folder = tmp_path_factory.mktemp("meta")
    (folder / "config.yaml").write_text(TINY.format(num_seeds=1, meta=META))
    settings, config, resolved = resolve_config(str(folder / "config.yaml"), [f"out_dir={folder / 'run'}"])
    save_yaml(resolved, folder / "run" / "config.yaml")
    with Checkpointer(folder / "run" / "checkpoints") as checkpoints:
        checkpoints.save(0, initial_state(make_ppo(config), settings))
    return str(folder / "run")


def evaluate(run_dir, tmp_path, name, *options):
    out = tmp_path / f"{name}.json"
    assert main(["evaluate", run_dir, "--out", str(out), *options]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def greedy_result(cartpole_run, tmp_path_factory):
    return evaluate(cartpole_run, tmp_path_factory.mktemp("eval"), "greedy", "--episodes", "4")


def test_greedy_returns_per_seed_lie_in_the_env_range(greedy_result):
    assert greedy_result["checkpoint"] == 2 and greedy_result["settings"]["greedy"]
    assert greedy_result["settings"]["split"] == "train"
    assert [s["seed_index"] for s in greedy_result["per_seed"]] == [0, 1]
    returns = np.array([s["returns"] for s in greedy_result["per_seed"]])
    assert returns.shape == (2, 4)
    assert np.all((returns >= 1) & (returns <= CARTPOLE_MAX_RETURN)) and np.all(returns == np.round(returns))
    assert greedy_result["mean"] == pytest.approx(returns.mean())
    assert greedy_result["std"] == pytest.approx(returns.std())


def test_render_draws_env_zero_of_a_deterministic_greedy_evaluation(cartpole_run, greedy_result, tmp_path, capsys):
    """Greedy evaluation repeats exactly; CartPole pays 1 per step, so env 0's GIF has as many frames as its return."""
    pytest.importorskip("pygame")
    result = evaluate(cartpole_run, tmp_path, "render", "--episodes", "4", "--seed-index", "0", "--render")
    assert result["per_seed"][0] == greedy_result["per_seed"][0]
    first_return = result["per_seed"][0]["returns"][0]
    assert result["render"]["return"] == first_return
    with Image.open(result["render"]["path"]) as gif:
        assert gif.n_frames == result["render"]["frames"] == first_return > 1
    out = capsys.readouterr().out
    assert "seed 0: return" in out and "all seeds: return" in out and "episode.gif" in out


def test_checkpoint_and_seed_index_pick_one_seed(cartpole_run, tmp_path):
    result = evaluate(cartpole_run, tmp_path, "c", "--episodes", "4", "--checkpoint", "1", "--seed-index", "1",
                      "--sample", "--seed", "3")
    assert result["checkpoint"] == 1 and not result["settings"]["greedy"]
    assert [s["seed_index"] for s in result["per_seed"]] == [1] and len(result["per_seed"][0]["returns"]) == 4


def test_meta_rl_returns_one_row_of_inner_episodes_per_env(meta_run, tmp_path, capsys):
    result = evaluate(meta_run, tmp_path, "meta", "--episodes", "3")
    assert result["settings"]["split"] == "test" and result["checkpoint"] == 0
    returns = np.array(result["per_seed"][0]["returns"])
    assert returns.shape == (3, 2)
    assert np.all((returns >= 1) & (returns <= CARTPOLE_MAX_RETURN))
    np.testing.assert_allclose(result["mean_per_episode"], returns.mean(axis=0))
    assert "mean return per inner episode: 1:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--split", "val"], "invalid choice: 'val'"),
        (["--split", "test"], "--split test is for meta-RL runs"),
        (["--episodes-per-trial", "4"], "--episodes-per-trial is for meta-RL runs"),
        (["--episodes", "0"], "expected an integer >= 1, got '0'"),
        (["--seed-index", "2"], "--seed-index 2 is out of range: the run has seeds 0..1"),
        (["--checkpoint", "7"], "no checkpoint for step 7"),
        (["--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_exit_2_with_a_message(cartpole_run, capsys, options, message):
    assert main(["evaluate", cartpole_run, *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ssmrl: error:") and message in err and "Traceback" not in err


def test_missing_run_dir_or_checkpoint_or_renderer_exit_2(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nowhere")]) == 2
    assert "run directory" in (err := capsys.readouterr().err) and "nowhere' does not exist" in err
    (tmp_path / "config.yaml").write_text("algo: ppo\nppo: {env: {name: RepeatPrevious-Easy}}\n")
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "no checkpoint in" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("algo: ppo\nppo: {env: {name: MemoryChain-bsuite}}\n")
    assert main(["evaluate", str(tmp_path), "--render"]) == 2
    err = capsys.readouterr().err
    assert "cannot draw env 'MemoryChain-bsuite'" in err and "CartPole-v1" in err and "POPGym" in err


@given(split=st.text(max_size=8).filter(lambda s: s not in SPLITS and not s.startswith("-")))
def test_any_other_split_is_rejected_naming_the_accepted_ones(split):
    with pytest.raises(ValueError, match="invalid choice.*'train', 'test'"):
        parse_args(["--split", split])


REPEAT = PPOConfig(env=EnvConfig(name="RepeatPrevious-Easy", num_envs=4), core="s5",
                   core_kwargs={"d_model": 8, "state_size": 4, "n_layers": 1}, hidden=8, num_steps=4,
                   num_minibatches=1, total_timesteps=16)


@pytest.fixture(scope="module")
def repeat_policy():
    """An untrained S5 policy on RepeatPrevious-Easy (51-step episodes, returns in [-1, 1]) and its evaluator."""
    params = jax.jit(make_ppo(REPEAT).init)(jax.random.PRNGKey(1)).params
    return make_evaluator(REPEAT, 3, greedy=False), params


def test_popgym_returns_lie_in_the_env_range(repeat_policy):
    evaluator, params = repeat_policy
    returns = first_episode_returns(evaluator, params, jax.random.PRNGKey(0))
    assert returns.shape == (3,) and np.all(np.abs(returns) <= 1.0 + 1e-6)


def test_step_bound_is_an_error_naming_it(repeat_policy):
    evaluator, params = repeat_policy
    with pytest.raises(ValueError, match="3 of 3 envs had not finished their first episode after max_steps=10"):
        first_episode_returns(evaluator, params, jax.random.PRNGKey(0), max_steps=10)


def test_popgym_observation_timeline_gif(repeat_policy, tmp_path):
    evaluator, params = repeat_policy
    render = render_episode(REPEAT, evaluator, params, jax.random.PRNGKey(0), tmp_path / "t.gif", max_frames=4)
    assert render["frames"] == 4
    with Image.open(tmp_path / "t.gif") as gif:
        assert gif.n_frames == 4


def test_normalised_runs_need_their_statistics(repeat_policy):
    _, params = repeat_policy
    config = dataclasses.replace(REPEAT, env=dataclasses.replace(REPEAT.env, normalize_obs=True))
    with pytest.raises(ValueError, match="obs_norm"):
        evaluate_policy(config, params, jax.random.PRNGKey(0), 2, greedy=True)
    with pytest.raises(ValueError, match="unknown split 'val'; accepted: \\['train', 'test'\\]"):
        evaluate_policy(REPEAT, params, jax.random.PRNGKey(0), 2, greedy=True, split="val")


# ---- MetaStatelessCartPole (popjaxrl's meta task): train 2 updates, per-trial curve, scripts/meta_curve.py ------

META_CARTPOLE = """
algo: ppo
checkpoint_every: 2
num_seeds: 1
progress: false
tensorboard: false
ppo:
  env: {name: MetaStatelessCartPole, num_envs: 4}
  core: mlp
  core_kwargs: {features: 8}
  hidden: 8
  num_steps: 16
  update_epochs: 1
  num_minibatches: 1
  total_timesteps: 128
"""


@pytest.fixture(scope="module")
def meta_cartpole_run(tmp_path_factory):
    """A tiny PPO (MLP core: the cheapest compile) trained through the CLI for 2 updates of MetaStatelessCartPole."""
    folder = tmp_path_factory.mktemp("meta_cartpole")
    (folder / "config.yaml").write_text(META_CARTPOLE)
    assert main(["train", str(folder / "config.yaml"), f"out_dir={folder / 'mlp'}"]) == 0
    return folder / "mlp"


def test_meta_cartpole_trains_and_evaluates_a_curve_over_its_16_trials(meta_cartpole_run, tmp_path, capsys):
    result = evaluate(str(meta_cartpole_run), tmp_path, "mc", "--episodes", "2")
    assert result["checkpoint"] == 2 and result["settings"]["split"] == "test"
    assert result["settings"]["episodes_per_trial"] == 16
    returns = np.array(result["per_seed"][0]["returns"])
    assert returns.shape == (2, 16) and len(result["mean_per_episode"]) == 16
    assert np.all((returns > 0) & (returns <= 1.0 + 1e-6))  # a trial returns the fraction of 200 steps survived
    assert "mean return per inner episode: 1:" in capsys.readouterr().out

    script = load_script("meta_curve")
    (meta_cartpole_run / "eval.json").write_text(json.dumps(result))
    script.main([str(meta_cartpole_run), "--out", str(tmp_path / "curve")])
    table = (tmp_path / "curve.md").read_text().splitlines()
    assert table[0] == "| trial | mlp |" and len(table) == 2 + 16 + 1 and table[-1].endswith("| 1 x 2 |")
    with Image.open(tmp_path / "curve.png") as png:
        assert png.size[0] > 100
    curves = json.loads((tmp_path / "curve.json").read_text())
    np.testing.assert_allclose(curves[0]["mean"], result["mean_per_episode"])


def test_episodes_per_trial_sets_the_meta_env_s_trials():
    """--episodes-per-trial K evaluates K trials per episode (past the training horizon, as the paper's 32)."""
    for name, meta in (("MetaStatelessCartPole", None), ("CartPole-v1", MetaConfig(obs_dim=4))):
        config = PPOConfig(env=EnvConfig(name=name, meta=meta))
        _, params = with_episodes_per_trial(config, 32).make_env(num_envs=1)
        assert params.episodes_per_trial == 32

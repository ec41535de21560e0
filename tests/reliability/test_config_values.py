"""Every config value is checked before any work; the message names the key, the value and what is accepted."""

import glob

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssmrl.agents.ppo import PPOConfig, check_config
from ssmrl.cli import main, resolve_config
from ssmrl.config import UNIT
from tests.layout import ROOT

PPO, MAPPO = str(ROOT / "configs/ppo_s5_repeat_previous.yaml"), str(ROOT / "configs/mappo_mpe_spread_s5.yaml")
BAD = [  # (override, the message)
    ("env.num_envs=0", "env.num_envs must be an integer >= 1, got 0"),
    ("num_steps=-4", "num_steps must be an integer >= 1, got -4"),
    ("num_minibatches=0", "num_minibatches must be an integer >= 1, got 0"),
    ("update_epochs=0", "update_epochs must be an integer >= 1, got 0"),
    ("total_timesteps=-1", "total_timesteps must be an integer >= 1, got -1"),
    ("lr=0", "lr must be a finite number > 0, got 0.0"),
    ("lr=-1e-4", "lr must be a finite number > 0, got -0.0001"),
    ("lr=.nan", "lr must be a finite number > 0, got nan"),
    ("lr=.inf", "lr must be a finite number > 0, got inf"),
    ("gamma=1.01", "gamma must be a finite number in [0, 1], got 1.01"),
    ("gamma=-0.5", "gamma must be a finite number in [0, 1], got -0.5"),
    ("gae_lambda=2", "gae_lambda must be a finite number in [0, 1], got 2.0"),
    ("clip_eps=-0.2", "clip_eps must be a finite number >= 0, got -0.2"),
    ("vf_coef=-1", "vf_coef must be a finite number >= 0, got -1.0"),
    ("ent_coef=-0.01", "ent_coef must be a finite number >= 0, got -0.01"),
    ("max_grad_norm=0", "max_grad_norm must be a finite number > 0, got 0.0"),
    ("core_kwargs={d_model: -8}", "core_kwargs.d_model must be an integer >= 1, got -8"),
    ("core_kwargs={state_size: 4.5}", "core_kwargs.state_size must be an integer >= 1, got 4.5"),
    ("core_kwargs={n_layers: 0}", "core_kwargs.n_layers must be an integer >= 1, got 0"),
    ("core_kwargs={d_model: wide}", "core_kwargs.d_model must be an integer >= 1, got 'wide'"),
]


@pytest.mark.parametrize(("base", "section"), [(PPO, "ppo"), (MAPPO, "mappo")])
@pytest.mark.parametrize(("override", "message"), BAD)
def test_bad_values_name_key_value_and_accepted(base, section, override, message):
    with pytest.raises(ValueError) as err:
        resolve_config(base, [override])
    assert str(err.value) == f"{section}.{message}"


@pytest.mark.parametrize(("override", "message"), [
    ("num_seeds=0", "num_seeds must be an integer >= 1, got 0"),
    ("checkpoint_every=-1", "checkpoint_every must be an integer >= 1, got -1"),
    ("num_devices=-1", "num_devices must be an integer >= 0, got -1"),
    ("mesh=[2,0]", "mesh[1] must be an integer >= 1, got 0"),
])
def test_bad_run_settings(override, message, capfd):
    assert main(["train", PPO, override]) == 2
    err = capfd.readouterr().err
    assert err == f"ssmrl: error: {message}\n"


def test_every_shipped_config_passes_and_integral_widths_become_ints():
    for path in sorted(glob.glob(str(ROOT / "configs/*.yaml"))):
        resolve_config(path, [])
    assert resolve_config(PPO, ["core_kwargs={d_model: 8.0}"])[1].core_kwargs["d_model"] == 8


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_unit_interval_accepts_exactly_the_finite_numbers_in_it(x):
    assert UNIT.accepts(x) == (0 <= x <= 1)


def test_python_api_checks_sizes_before_dividing_by_them():
    with pytest.raises(ValueError, match="num_minibatches must be >= 1, got 0"):
        check_config(PPOConfig(num_minibatches=0))
    with pytest.raises(ValueError, match="env.num_envs must be >= 1"):
        check_config(PPOConfig(env=PPOConfig().env.__class__(num_envs=0)))

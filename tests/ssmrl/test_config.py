"""ssmrl.config: YAML + overrides -> typed frozen dataclasses, clear errors, lossless round trip."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ssmrl.config import apply_overrides, config_to_dict, load_yaml, parse_config, parse_yaml, save_yaml


@dataclasses.dataclass(frozen=True)
class Net:
    hidden: tuple[int, ...] = (64, 64)
    activation: Literal["tanh", "relu"] = "tanh"
    scales: tuple[float, ...] = (1.0,)


@dataclasses.dataclass(frozen=True)
class Trainer:
    lr: float = 3e-4
    num_envs: int = 8
    anneal: bool = True
    env: str = "CartPole-v1"
    max_grad_norm: float | None = 0.5
    net: Net = Net()
    critic: Optional[Net] = None  # noqa: UP045 (the typing.Optional spelling must work too)
    core: dict[str, Any] = dataclasses.field(default_factory=dict)


def _error(data, where="ppo") -> str:
    with pytest.raises(ValueError) as info:
        parse_config(Trainer, data, where)
    return str(info.value)


def test_missing_keys_take_defaults_and_sections_nest():
    cfg = parse_config(Trainer, {"lr": 1, "net": {"hidden": [8]}, "critic": {}, "core": {"name": "s5"}})
    assert cfg == Trainer(lr=1.0, net=Net(hidden=(8,)), critic=Net(), core={"name": "s5"})
    assert isinstance(cfg.lr, float) and isinstance(cfg.net.hidden, tuple)
    assert parse_config(Trainer, {}) == Trainer()


def test_unknown_key_names_path_accepted_keys_and_suggestion():
    msg = _error({"lrr": 0.1})
    assert "unknown key 'ppo.lrr'" in msg and "did you mean 'lr'?" in msg and "'num_envs'" in msg
    msg = _error({"net": {"hiden": [1]}})
    assert "'ppo.net.hiden'" in msg and "'hidden'" in msg
    assert "unknown key 'lrr'" in _error({"lrr": 0.1}, where="config")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"num_envs": "abc"}, "ppo.num_envs must be an int, got 'abc'"),
        ({"num_envs": 2.5}, "ppo.num_envs must be an int, got 2.5"),
        ({"anneal": 1}, "ppo.anneal must be a bool"),
        ({"anneal": "yes"}, "got 'yes'"),
        ({"lr": True}, "ppo.lr must be a float, got True"),
        ({"env": 3}, "ppo.env must be a string, got 3"),
        ({"max_grad_norm": "x"}, "ppo.max_grad_norm must be a float or null, got 'x'"),
        ({"lr": None}, "ppo.lr must be a float, got None"),
        ({"net": {"activation": "gelu"}}, "ppo.net.activation must be one of ['tanh', 'relu'], got 'gelu'"),
        ({"net": {"hidden": 64}}, "ppo.net.hidden must be a list of int, got 64"),
        ({"net": {"hidden": [64, "x"]}}, "ppo.net.hidden[1] must be an int, got 'x'"),
        ({"net": [1, 2]}, "ppo.net must be a mapping"),
        ({"critic": {"activation": "elu"}}, "ppo.critic.activation must be one of"),
        ({"core": ["s5"]}, "ppo.core must be a mapping"),
    ],
)
def test_wrong_values_name_the_key_the_value_and_what_is_accepted(data, expected):
    assert expected in _error(data)


def test_ints_accept_integral_floats_and_floats_accept_ints():
    cfg = parse_config(Trainer, parse_yaml("num_envs: 1e3\nlr: 1\nnet: {scales: [1, 2.5]}"))
    assert cfg.num_envs == 1000 and type(cfg.num_envs) is int
    assert cfg.lr == 1.0 and type(cfg.lr) is float and cfg.net.scales == (1.0, 2.5)


def test_yaml_scalars_follow_yaml_1_2():
    data = parse_yaml("a: 3e-4\nb: -1E6\nc: yes\nd: off\ne: true\nf: 1.5\ng: '1e6'")
    assert data == {"a": 3e-4, "b": -1e6, "c": "yes", "d": "off", "e": True, "f": 1.5, "g": "1e6"}


def test_overrides_parse_values_nest_and_leave_the_input_alone():
    data = {"algo": "ppo", "ppo": {"lr": 0.1, "net": {"hidden": [4]}}}
    out = apply_overrides(data, ["ppo.lr=3e-4", "ppo.anneal=false", "ppo.net.hidden=[1,2]", "ppo.core.name=s5",
                                 "seed = 3", "ppo.env=Breakout-MinAtar"])
    assert data == {"algo": "ppo", "ppo": {"lr": 0.1, "net": {"hidden": [4]}}}
    assert out == {"algo": "ppo", "seed": 3, "ppo": {"lr": 3e-4, "anneal": False, "net": {"hidden": [1, 2]},
                                                     "core": {"name": "s5"}, "env": "Breakout-MinAtar"}}
    assert parse_config(Trainer, out["ppo"]).net.hidden == (1, 2)


@pytest.mark.parametrize("bad", ["ppo.lr", "=3", "ppo..lr=1", "ppo.=1", "algo.x=1"])
def test_bad_overrides_are_rejected_with_the_expected_form(bad):
    with pytest.raises(ValueError, match="bad override") as info:
        apply_overrides({"algo": "ppo"}, [bad])
    assert repr(bad) in str(info.value)


def test_load_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_yaml(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="list.yaml.*mapping"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match="broken.yaml.*not valid YAML"):
        load_yaml(tmp_path / "broken.yaml")
    (tmp_path / "empty.yaml").write_text("")
    assert load_yaml(tmp_path / "empty.yaml") == {}


def test_save_yaml_replaces_atomically_and_writes_plain_yaml(tmp_path):
    path = tmp_path / "sub" / "config.yaml"
    save_yaml({"algo": "ppo"}, path)
    save_yaml(Trainer(net=Net(hidden=(3,))), path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.yaml"]
    assert "!!" not in path.read_text()  # no Python tags: plain YAML any reader understands
    assert load_yaml(path)["net"]["hidden"] == [3]
    with pytest.raises(TypeError, match="object"):
        config_to_dict({"x": object()})


_names = st.text(max_size=8)
_floats = st.floats(allow_nan=False, width=64)
_positive = st.floats(min_value=0, exclude_min=True, allow_infinity=False, width=64)  # lr, max_grad_norm (VALUE_CHECKS)
_nets = st.builds(
    Net,
    hidden=st.lists(st.integers(1, 2**40), max_size=3).map(tuple),
    activation=st.sampled_from(["tanh", "relu"]),
    scales=st.lists(_floats, max_size=3).map(tuple),
)
_trainers = st.builds(
    Trainer,
    lr=_positive,
    num_envs=st.integers(1),
    anneal=st.booleans(),
    env=_names,
    max_grad_norm=st.none() | _positive,
    net=_nets,
    critic=st.none() | _nets,
    core=st.dictionaries(_names, st.none() | st.booleans() | st.integers() | _floats | _names, max_size=3),
)


@given(cfg=_trainers)
def test_round_trip_through_dict_and_yaml(tmp_path_factory, cfg):
    assert parse_config(Trainer, config_to_dict(cfg)) == cfg
    path = tmp_path_factory.getbasetemp() / "round_trip.yaml"
    save_yaml(cfg, path)
    assert parse_config(Trainer, load_yaml(path)) == cfg

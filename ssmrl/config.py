"""Typed run configs: YAML files and `a.b=value` overrides -> frozen dataclasses, and back.

YAML is read with YAML 1.2 scalars where YAML 1.1 (PyYAML's default) surprises: `3e-4` and `1e6` are floats
(not strings) and only `true`/`false` are booleans (`yes`, `no`, `on`, `off` stay strings). Files written by
`save_yaml` quote every string that a YAML 1.1 or 1.2 reader would take for something else.

`parse_config` also checks every number against `VALUE_CHECKS`, a table by field name shared by all trainers (sizes
>= 1, learning rates > 0, discounts in [0, 1], ...), and the entries of `core_kwargs` the same way.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import re
import tempfile
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
# Exponent floats without a dot (`3e-4`, `1E6`), which YAML 1.1 reads as strings.
_EXP_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and exponent floats."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, _BOOL, list("tTfF"))
_Loader.add_implicit_resolver(_FLOAT_TAG, _EXP_FLOAT, list("-+0123456789"))


class _Dumper(yaml.SafeDumper):
    """SafeDumper that also quotes strings `_Loader` would read as floats (its YAML 1.1 bools are quoted already)."""


_Dumper.add_implicit_resolver(_FLOAT_TAG, _EXP_FLOAT, list("-+0123456789"))


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The accepted values of a number: from `low` to `high`, each end included unless open; always finite."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def accepts(self, value: float) -> bool:
        if not math.isfinite(value) or (self.integer and value != int(value)):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if math.isinf(self.high):
            return f"{kind} {'>' if self.low_open else '>='} {self.low:g}"
        return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


COUNT = Bounds(1, integer=True)
POSITIVE = Bounds(0, low_open=True)
NON_NEGATIVE = Bounds(0)
UNIT = Bounds(0, 1)
NATURAL = Bounds(0, integer=True)
VALUE_CHECKS: dict[str, Bounds] = {
    **dict.fromkeys((
        "num_seeds", "checkpoint_every", "keep_checkpoints", "num_envs", "num_steps", "num_minibatches",
        "update_epochs",
        "total_timesteps", "hidden", "obs_dim", "action_dim", "episodes_per_trial", "num_train_tasks", "num_test_tasks",
        "batch_size", "context", "d_model", "n_heads", "n_layers", "mlp_ratio", "num_updates", "steps_per_iter",
        "max_ep_len", "episodes", "units", "latent_dim", "image_size", "cnn_depth",
        "cnn_kernel", "head_units", "mlp_units", "actor_units", "critic_units", "num_bins", "num_classes",
        "num_latents", "imagine_batch", "imagine_horizon", "capacity", "total_steps", "env_steps_per_update",
        "train_every", "train_steps", "mesh",
        # widths of the cores (`core_kwargs`)
        "features", "state_size", "blocks", "d_state", "d_conv", "expand", "head_dim", "n_groups", "chunk_size",
        "dt_rank",
    ), COUNT),
    # num_episodes: 0 turns the offline trainers' evaluation off
    **dict.fromkeys(("num_devices", "max_steps", "warmup_steps", "behaviour_warmup", "wm_warmup", "num_episodes"),
                    NATURAL),
    **dict.fromkeys(("lr", "learning_rate", "adam_eps", "max_grad_norm", "grad_clip", "dt_min", "dt_max"), POSITIVE),
    **dict.fromkeys(("gamma", "gae_lambda", "lam", "unimix", "kl_balance", "return_decay", "slow_critic_decay"), UNIT),
    **dict.fromkeys(("clip_eps", "vf_coef", "ent_coef", "entropy_coef", "weight_decay"), NON_NEGATIVE),
    **dict.fromkeys(("dropout", "embed_dropout"), Bounds(0, 1, high_open=True)),
}
"""Accepted values by field name, in every config section (and in `core_kwargs`); a tuple's items are checked."""
CHECKED_MAPPINGS = ("core_kwargs",)
"""dict fields whose entries `VALUE_CHECKS` covers too (an integral float there becomes an int)."""


def parse_yaml(text: str) -> Any:
    """One YAML document -> Python objects (YAML 1.2 booleans and exponent floats)."""
    return yaml.load(text, Loader=_Loader)


def load_yaml(path: str | os.PathLike) -> dict:
    """The mapping at the top of the YAML file `path` (an empty file gives `{}`)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"config file {str(path)!r} is a folder; give a YAML file (a run folder's is "
                                f"{str(path / 'config.yaml')!r})")
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        data = parse_yaml(path.read_text())
    except UnicodeDecodeError as err:
        raise ValueError(f"config file {str(path)!r} is not a text file: {err}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"config file {str(path)!r} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping (key: value lines), got {data!r}")
    return data


def apply_overrides(data: Mapping, overrides: Sequence[str]) -> dict:
    """A deep copy of `data` with each `"a.b.c=value"` set; intermediate sections are created as needed.

    Values are YAML (`lr=3e-4`, `anneal=false`, `sizes=[1,2]`, `name=null`). Unknown keys pass through here and
    are reported by `parse_config`.
    """
    out = copy.deepcopy(dict(data))
    for override in overrides:
        key, sep, text = override.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ValueError(f"bad override {override!r}: expected KEY=VALUE with a dotted key, e.g. 'ppo.lr=3e-4'")
        node = out
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                section = ".".join(parts[: depth + 1])
                raise ValueError(f"bad override {override!r}: {section!r} is {child!r}, not a section")
            node = child
        try:
            node[parts[-1]] = parse_yaml(text)
        except yaml.YAMLError as err:
            raise ValueError(f"bad override {override!r}: the value is not valid YAML: {err}") from err
    return out


def parse_config(cls: type, data: Mapping, where: str = "config") -> Any:
    """The frozen dataclass `cls` built from `data`, recursively; missing keys take the field defaults.

    `where` is the dotted path of `data` in the whole config, used in error messages (`"config"`: the top level;
    `"ppo"`: keys are reported as `ppo.<key>`). Values are checked, not coerced, except: a float field takes an
    int, an int field takes an integral float (`1e6`), a tuple field takes a list. Raises ValueError naming the key
    path, the bad value and what is accepted.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"parse_config needs a dataclass type, got {cls!r}")
    config = _parse_dataclass(cls, data, "" if where == "config" else where)
    check_values(config, where)
    return config


def check_values(config: Any, where: str = "config") -> None:
    """ValueError naming the first value of the dataclass `config` (recursively) outside `VALUE_CHECKS`: the key
    path, the value and what is accepted. `where` as in `parse_config`."""
    _check_node(config, "" if where == "config" else where)


def _check_node(node: Any, path: str) -> None:
    for field in dataclasses.fields(node):
        if not field.init:
            continue
        value, key = getattr(node, field.name), _key(path, field.name)
        if dataclasses.is_dataclass(value):
            _check_node(value, key)
        elif field.name in CHECKED_MAPPINGS and isinstance(value, dict):
            for name, entry in value.items():
                value[name] = _check_number(name, entry, _key(key, name), entry_of_mapping=True)
        else:
            items = enumerate(value) if isinstance(value, tuple) else [(None, value)]
            for i, item in items:
                _check_number(field.name, item, key if i is None else f"{key}[{i}]")


def _check_number(name: str, value: Any, path: str, entry_of_mapping: bool = False) -> Any:
    """`value` if `VALUE_CHECKS[name]` accepts it (None and non-numbers pass: their types are checked elsewhere)."""
    bounds = VALUE_CHECKS.get(name)
    if bounds is None or value is None or isinstance(value, bool) or not isinstance(value, int | float):
        if bounds is not None and entry_of_mapping and value is not None:
            raise ValueError(f"{path} must be {bounds.describe()}, got {value!r}")
        return value
    if not bounds.accepts(value):
        raise ValueError(f"{path} must be {bounds.describe()}, got {value!r}")
    return int(value) if bounds.integer else value


def config_to_dict(cfg: Any) -> Any:
    """A dataclass config (or a mapping/list of them) as plain YAML-safe data: dicts, lists, str, numbers, None."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    if isinstance(cfg, Mapping):
        return {str(k): config_to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, list | tuple):
        return [config_to_dict(v) for v in cfg]
    if cfg is None or isinstance(cfg, bool | int | float | str):
        return cfg
    raise TypeError(f"cannot write {type(cfg).__name__} {cfg!r} to YAML; use str, numbers, bools, lists and dicts")


def save_yaml(data_or_cfg: Any, path: str | os.PathLike) -> None:
    """Write a config (dataclass or mapping) to `path` as YAML, atomically (temporary file + rename)."""
    text = yaml.dump(config_to_dict(data_or_cfg), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, text)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and a rename: readers see the old file
    or the new one, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _parse_dataclass(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{path or 'the config'} must be a mapping (a section of key: value), got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown key {_key(path, str(key))!r} in config; accepted keys: {sorted(fields)}{hint}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _key(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ValueError(f"missing required key {_key(path, name)!r} in config")
    return cls(**kwargs)


def _convert(tp: Any, value: Any, path: str) -> Any:
    """`value` checked (and, for float/tuple/dataclass, converted) against the annotation `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for option in options:
            try:
                return _convert(option, value, path)
            except ValueError:
                if len(options) == 1 and isinstance(value, Mapping | list | tuple):
                    raise  # the error from inside a section or list names the exact key
        accepted = " or ".join(_describe(a) for a in args)
        raise ValueError(f"{path} must be {accepted}, got {value!r}")
    if origin is typing.Literal:
        if any(value == choice and type(value) is type(choice) for choice in args):
            return value
        raise ValueError(f"{path} must be one of {list(args)}, got {value!r}")
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{path}: unsupported annotation {tp!r}; use tuple[T, ...]")
        if not isinstance(value, list | tuple):
            raise ValueError(f"{path} must be {_describe(tp)}, got {value!r}")
        return tuple(_convert(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict or tp is dict:
        if not (isinstance(value, Mapping) and all(isinstance(k, str) for k in value)):
            raise ValueError(f"{path} must be a mapping with string keys, got {value!r}")
        return copy.deepcopy(dict(value))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"{path}: unsupported annotation {tp!r}")
    raise ValueError(f"{path} must be {_describe(tp)}, got {value!r}")


def _describe(tp: Any) -> str:
    """Words for an annotation in error messages: `an int`, `a list of float`, `null`."""
    if tp is type(None):
        return "null"
    if typing.get_origin(tp) is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0]).removeprefix('a ').removeprefix('an ')}"
    if typing.get_origin(tp) is typing.Literal:
        return f"one of {list(typing.get_args(tp))}"
    names = {bool: "a bool (true or false)", int: "an int", float: "a float", str: "a string"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp) or tp is dict or typing.get_origin(tp) is dict:
        return "a mapping"
    return repr(tp)

"""Typed run configs: YAML files and `a.b=value` overrides -> frozen dataclasses, and back.

YAML is read with YAML 1.2 scalars where YAML 1.1 (PyYAML's default) surprises: `3e-4` and `1e6` are floats
(not strings) and only `true`/`false` are booleans (`yes`, `no`, `on`, `off` stay strings). Files written by
`save_yaml` quote every string that a YAML 1.1 or 1.2 reader would take for something else.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
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


def parse_yaml(text: str) -> Any:
    """One YAML document -> Python objects (YAML 1.2 booleans and exponent floats)."""
    return yaml.load(text, Loader=_Loader)


def load_yaml(path: str | os.PathLike) -> dict:
    """The mapping at the top of the YAML file `path` (an empty file gives `{}`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        data = parse_yaml(path.read_text())
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
    return _parse_dataclass(cls, data, "" if where == "config" else where)


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

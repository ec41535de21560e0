"""Constructor keyword arguments of an env: which of `make`'s kwargs go to the constructor and which override
fields of the env's params (used by the gymnax, brax and jaxmarl adapters)."""

import dataclasses
import inspect
from collections.abc import Iterable, Mapping
from typing import Any

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def split_kwargs(
    env_name: str, kwargs: Mapping[str, Any], constructor_args: Iterable[str], params: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Splits ``make`` kwargs into constructor kwargs and overrides of the params dataclass' fields.

    A name accepted by both goes to the constructor. ValueError names unknown kwargs and the accepted ones.
    """
    constructor_args = set(constructor_args)
    fields = {f.name for f in dataclasses.fields(params)} if dataclasses.is_dataclass(params) else set()
    unknown = sorted(set(kwargs) - constructor_args - fields)
    if unknown:
        raise ValueError(
            f"{env_name} got unknown kwargs {unknown}; accepted: constructor args {sorted(constructor_args)}"
            f", params fields {sorted(fields)}"
        )
    ctor = {k: v for k, v in kwargs.items() if k in constructor_args}
    overrides = {k: v for k, v in kwargs.items() if k not in constructor_args}
    return ctor, overrides


def constructor_args(cls: type) -> list[str]:
    """Keyword args ``cls(...)`` accepts: the named args of ``__init__``, following ``**kwargs`` up the MRO."""
    names: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        names += [p.name for p in parameters if p.kind in _NAMED and p.name not in names]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return names

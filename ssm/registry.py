"""`make_core(name, **cfg)`: build any registered recurrent core by name."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping

from ssmrl.ssm.core import RecurrentCore
from ssmrl.ssm.deltanet import GatedDeltaNetCore, GatedDeltaProductCore
from ssmrl.ssm.lru import LRUCore
from ssmrl.ssm.mamba import MambaCore
from ssmrl.ssm.mamba2 import Mamba2Core
from ssmrl.ssm.rnn import GRUCore, LSTMCore
from ssmrl.ssm.s4 import S4Core
from ssmrl.ssm.s4d import S4DCore
from ssmrl.ssm.s5 import S5Core

CORES: dict[str, Callable[..., RecurrentCore]] = {
    "s5": S5Core,
    "s4": S4Core,
    "s4d": S4DCore,
    "gru": GRUCore,
    "lstm": LSTMCore,
    "mamba": MambaCore,
    "mamba2": Mamba2Core,
    "lru": LRUCore,
    "gated_deltanet": GatedDeltaNetCore,
    "deltaproduct": GatedDeltaProductCore,
}


def make_core(name: str, **cfg) -> RecurrentCore:
    """The core registered as `name`, configured by `cfg` (the core's dataclass fields)."""
    return build_named(CORES, "core", name, cfg)


def build_named(registry: Mapping[str, Callable], kind: str, name: str, cfg: Mapping):
    """`registry[name](**cfg)` for a dataclass-like class, with clear errors for an unknown name or option."""
    if name not in registry:
        close = difflib.get_close_matches(name, registry, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"unknown {kind} {name!r}; known {kind}s: {sorted(registry)}.{hint}")
    cls = registry[name]
    fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name"}
    unknown = sorted(set(cfg) - fields)
    if unknown:
        raise ValueError(f"{kind} {name!r} has no option(s) {unknown}; accepted: {sorted(fields)}")
    return cls(**cfg)

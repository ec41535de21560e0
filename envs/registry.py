"""The name -> env registry behind :func:`ssmrl.envs.make`.

Families register lazily, the first time a name of theirs is asked for (brax and jaxmarl are slow to
import): POPGym (``"RepeatPrevious-Easy"`` and POPGym's / popjaxrl's aliases), the POPGym-style
state-tracking tasks (``"Parity-Easy"``, ``"ParityEasy"``), gymnax (its own names,
also as ``"gymnax/<name>"``), brax (``"brax/<name>"``), jaxmarl (``"jaxmarl/<name>"``) and S4WM's memory
world-model suites (``"memory_wm/<name>"``), and the registered meta-RL tasks of ``envs.meta``
(``"MetaStatelessCartPole"``).
"""

import difflib
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

Factory = Callable[..., tuple[Any, Any]]
"""``factory(**kwargs) -> (env, params)``."""

_FACTORIES: dict[str, Factory] = {}
_ALIASES: dict[str, str] = {}
_LOADED: set[str] = set()


def _add_game_suite(suite: Mapping[str, Callable], aliases: Mapping[str, str]) -> None:
    """Registers a POPGym-style suite: canonical name -> factory, and alias -> canonical name."""
    for name, build in suite.items():
        _add(name, _with_default_params(build))
    for alias, name in aliases.items():
        _add_alias(alias, name)


def _load_popgym() -> None:
    from ssmrl.envs.popgym.suite import POPGYM_ALIASES, POPGYM_ENVS

    _add_game_suite(POPGYM_ENVS, POPGYM_ALIASES)


def _load_state_tracking() -> None:
    from ssmrl.envs.state_tracking.suite import STATE_TRACKING_ALIASES, STATE_TRACKING_ENVS

    _add_game_suite(STATE_TRACKING_ENVS, STATE_TRACKING_ALIASES)


def _load_gymnax() -> None:
    from ssmrl.envs import gymnax_adapter

    for name in gymnax_adapter.gymnax_names():
        _add(name, partial(gymnax_adapter.make_gymnax, name))
        _add_alias(gymnax_adapter.PREFIX + name, name)


def _load_brax() -> None:
    from ssmrl.envs import brax_adapter

    for name in brax_adapter.BRAX_NAMES:
        _add(brax_adapter.PREFIX + name, partial(brax_adapter.make_brax, name))


def _load_jaxmarl() -> None:
    from ssmrl.envs import jaxmarl_adapter

    for name in jaxmarl_adapter.jaxmarl_names():
        _add(jaxmarl_adapter.PREFIX + name, partial(jaxmarl_adapter.make_jaxmarl, name))


def _load_memory_wm() -> None:
    from ssmrl.envs.memory_wm.suite import MEMORY_WM_ENVS, PREFIX

    for name, build in MEMORY_WM_ENVS.items():
        _add(PREFIX + name, _with_default_params(build))


def _load_meta() -> None:
    from ssmrl.envs.meta import META_ALIASES, META_ENVS

    for name, factory in META_ENVS.items():
        _add(name, factory)
    for alias, name in META_ALIASES.items():
        _add_alias(alias, name)


_LOADERS: dict[str, Callable[[], None]] = {
    "gymnax": _load_gymnax, "popgym": _load_popgym, "state_tracking": _load_state_tracking, "meta": _load_meta,
    "brax": _load_brax, "jaxmarl": _load_jaxmarl, "memory_wm": _load_memory_wm,
}


def _families(name: str) -> tuple[str, ...]:
    """The families a name can belong to, cheapest first."""
    for family in ("brax", "jaxmarl", "memory_wm"):
        if name.startswith(family + "/"):
            return (family,)
    return ("gymnax", "popgym", "state_tracking", "meta")


_LOADING = threading.RLock()  # envs may be made from several threads (e.g. scripts/bench_ppo.py's compile pool)


def _ensure(families: Iterable[str]) -> None:
    for family in families:
        if family in _LOADED:
            continue
        with _LOADING:
            if family not in _LOADED:
                _LOADERS[family]()
                _LOADED.add(family)


def _with_default_params(build: Callable[..., Any]) -> Factory:
    def factory(**kwargs: Any) -> tuple[Any, Any]:
        env = build(**kwargs)
        return env, env.default_params

    return factory


def _add(name: str, factory: Factory) -> None:
    if name in _FACTORIES or name in _ALIASES:
        raise ValueError(f"env name {name!r} is already registered")
    if not callable(factory):
        raise ValueError(f"factory for {name!r} must be callable, got {factory!r}")
    _FACTORIES[name] = factory


def _add_alias(alias: str, name: str) -> None:
    if alias in _FACTORIES or _ALIASES.get(alias, name) != name:
        raise ValueError(f"alias {alias!r} is already registered")
    if name not in _FACTORIES:
        raise ValueError(f"alias {alias!r} points to unregistered env {name!r}")
    _ALIASES[alias] = name


def register(name: str, factory: Factory) -> None:
    """Adds ``factory(**kwargs) -> (env, params)`` under ``name``; ValueError if the name is taken."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"env name must be a non-empty string, got {name!r}")
    _ensure(_families(name))
    _add(name, factory)


def registered_names() -> list[str]:
    """Canonical names of every registered env (aliases excluded), in registration order."""
    _ensure(_LOADERS)
    return list(_FACTORIES)


def make(name: str, /, **kwargs: Any) -> tuple[Any, Any]:
    """Builds the env registered as ``name`` (canonical name or alias): returns ``(env, params)``.

    ``kwargs`` go to the env's constructor or override fields of its params (see the family's
    adapter); unknown kwargs raise ValueError. Unknown names raise ValueError with close matches.
    """
    if not isinstance(name, str):
        raise ValueError(f"env name must be a string, got {name!r}")
    for family in (*_families(name), *_LOADERS):  # load the likely families first, all if not found
        if name in _FACTORIES or name in _ALIASES:
            break
        _ensure((family,))
    canonical = _ALIASES.get(name, name)
    if canonical not in _FACTORIES:
        known = list(_FACTORIES) + list(_ALIASES)
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f"; close matches: {close}" if close else ""
        raise ValueError(f"unknown env {name!r}{hint}. See envs.registered_names() for all {len(_FACTORIES)}")
    return _FACTORIES[canonical](**kwargs)

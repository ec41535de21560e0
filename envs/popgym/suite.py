"""The POPGym suite: every POPGym env family's REGISTRY and ALIASES merged into one table each.

``POPGYM_ENVS``: canonical name (``"RepeatPrevious-Easy"``) -> factory ``(**overrides) -> env``.
``POPGYM_ALIASES``: alias (POPGym's ``"RepeatPreviousEasy"``, ``"popgym-RepeatPreviousEasy-v0"``,
popjaxrl's names) -> canonical name.
"""

import importlib
from collections.abc import Callable, Iterable
from types import ModuleType

from gymnax.environments import environment

MODULE_NAMES = (
    "autoencode", "battleship", "cartpole", "concentration", "count_recall", "higher_lower", "labyrinth",
    "minesweeper", "multiarmed_bandit", "pendulum", "repeat_first", "repeat_previous",
)
MODULES = tuple(importlib.import_module(f"{__package__}.{name}") for name in MODULE_NAMES)


def merge_registries(
    modules: Iterable[ModuleType],
) -> tuple[dict[str, Callable[..., environment.Environment]], dict[str, str]]:
    """Merge the ``REGISTRY`` and ``ALIASES`` of `modules` (POPGym's or another family's of the same shape).

    Raises:
        ValueError: a name registered twice (naming both modules), an alias equal to a canonical
            name, or an alias pointing to a name that no module registers.
    """
    envs: dict[str, Callable[..., environment.Environment]] = {}
    aliases: dict[str, str] = {}
    owners: dict[str, str] = {}
    for module in modules:
        for table, merged in ((module.REGISTRY, envs), (module.ALIASES, aliases)):
            for name, entry in table.items():
                if name in owners:
                    raise ValueError(f"env name {name!r} is defined by both {owners[name]} and {module.__name__}")
                owners[name] = module.__name__
                merged[name] = entry
    dangling = sorted(alias for alias, target in aliases.items() if target not in envs)
    if dangling:
        raise ValueError(f"aliases {dangling} point to unregistered names")
    return envs, aliases


POPGYM_ENVS, POPGYM_ALIASES = merge_registries(MODULES)

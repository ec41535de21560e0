"""The trainers `ssmrl train` knows, by the `algo:` key of a config file (imported lazily)."""

from __future__ import annotations

import dataclasses
import difflib
import importlib
from collections.abc import Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class AlgoSpec:
    """Where a trainer lives, as "module:attribute" strings.

    config: its config dataclass; make: config -> `Algorithm`; finish: (config, final state, out_dir) -> None,
    run after training (evaluation figures); evaluate: the `ssmrl evaluate` entry (run_dir, argv) -> None.
    """

    config: str
    make: str
    finish: str | None = None
    evaluate: str | None = None

    def load(self, attribute: str) -> Callable[..., Any] | type | None:
        target = getattr(self, attribute)
        if target is None:
            return None
        module, _, name = target.partition(":")
        return getattr(importlib.import_module(module), name)


ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec("agents.ppo:PPOConfig", "agents.ppo:make_ppo", evaluate="agents.evaluate:evaluate_run"),
    "mappo": AlgoSpec("agents.mappo:MAPPOConfig", "agents.ppo:make_ppo", evaluate="agents.evaluate:evaluate_run"),
    "ippo": AlgoSpec("agents.mappo:IPPOConfig", "agents.ppo:make_ppo", evaluate="agents.evaluate:evaluate_run"),
    "s4wm": AlgoSpec("worldmodels.train_s4wm:S4WMConfig", "worldmodels.train_s4wm:make_s4wm",
                     finish="worldmodels.train_s4wm:finish"),
    "decision_transformer": AlgoSpec("agents.offline_train:DecisionTransformerConfig",
                                     "agents.offline_train:make_offline", finish="agents.offline_train:finish"),
    "decision_mamba": AlgoSpec("agents.offline_train:DecisionMambaConfig",
                               "agents.offline_train:make_offline", finish="agents.offline_train:finish"),
    "decision_mamba_plain": AlgoSpec("agents.offline_train:PlainDecisionMambaConfig",
                                     "agents.offline_train:make_offline", finish="agents.offline_train:finish"),
    "decision_s5": AlgoSpec("agents.offline_train:DecisionS5Config",
                            "agents.offline_train:make_offline", finish="agents.offline_train:finish"),
    "drama": AlgoSpec("agents.dreamer_loop:DramaConfig", "agents.dreamer_loop:make_drama",
                      finish="worldmodels.drama_eval:finish", evaluate="worldmodels.drama_eval:evaluate_run"),
}


def algo_spec(name: Any) -> AlgoSpec:
    """The spec of trainer `name`; ValueError listing the known ones."""
    if name not in ALGOS:
        close = difflib.get_close_matches(str(name), ALGOS, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"unknown algo {name!r}; known: {sorted(ALGOS)}.{hint}")
    return ALGOS[name]

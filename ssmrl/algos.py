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


PPO_EVALUATE = "ssmrl.agents.evaluate:evaluate_run"
OFFLINE = "ssmrl.agents.offline_train"
DRAMA = "ssmrl.worldmodels.train_drama"
DRAMA_EVAL = "ssmrl.worldmodels.drama_eval"
S4WM = "ssmrl.worldmodels.train_s4wm"

ALGOS: dict[str, AlgoSpec] = {
    "ppo": AlgoSpec("ssmrl.agents.ppo:PPOConfig", "ssmrl.agents.ppo:make_ppo", evaluate=PPO_EVALUATE),
    "mappo": AlgoSpec("ssmrl.agents.mappo:MAPPOConfig", "ssmrl.agents.ppo:make_ppo", evaluate=PPO_EVALUATE),
    "ippo": AlgoSpec("ssmrl.agents.mappo:IPPOConfig", "ssmrl.agents.ppo:make_ppo", evaluate=PPO_EVALUATE),
    "s4wm": AlgoSpec(f"{S4WM}:S4WMConfig", f"{S4WM}:make_s4wm", finish=f"{S4WM}:finish"),
    "decision_transformer": AlgoSpec(f"{OFFLINE}:DecisionTransformerConfig", f"{OFFLINE}:make_offline",
                                     finish=f"{OFFLINE}:finish"),
    "decision_mamba": AlgoSpec(f"{OFFLINE}:DecisionMambaConfig", f"{OFFLINE}:make_offline",
                               finish=f"{OFFLINE}:finish"),
    "decision_mamba_plain": AlgoSpec(f"{OFFLINE}:PlainDecisionMambaConfig", f"{OFFLINE}:make_offline",
                                     finish=f"{OFFLINE}:finish"),
    "decision_s5": AlgoSpec(f"{OFFLINE}:DecisionS5Config", f"{OFFLINE}:make_offline", finish=f"{OFFLINE}:finish"),
    "drama": AlgoSpec(f"{DRAMA}:DramaConfig", f"{DRAMA}:make_drama", finish=f"{DRAMA_EVAL}:finish",
                      evaluate=f"{DRAMA_EVAL}:evaluate_run"),
}


def algo_spec(name: Any) -> AlgoSpec:
    """The spec of trainer `name`; ValueError listing the known ones."""
    if name not in ALGOS:
        close = difflib.get_close_matches(str(name), ALGOS, n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"unknown algo {name!r}; known: {sorted(ALGOS)}.{hint}")
    return ALGOS[name]

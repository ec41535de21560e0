"""The env a single-agent trainer acts in, built from an `EnvConfig`.

Stack (inside out): `ssmrl.envs.make(name, **kwargs)` -> FlattenObservation (non-flat observations) -> MetaRL (when
`meta` is set) -> LogWrapper (inner episodes of a trial when meta) -> PrevActionReward (when
`prev_action_reward`) -> VecEnv(num_envs) -> NormalizeObservation (when `normalize_obs`, statistics shared by
all envs).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from gymnax.environments import spaces

import ssmrl.envs as envs
from ssmrl.envs.meta import MetaRL
from ssmrl.envs.wrappers import FlattenObservation, LogWrapper, NormalizeObservation, PrevActionReward, VecEnv


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """`ssmrl.envs.meta.MetaRL` options: trials of random projections of the base env (Lu et al. 2023)."""

    obs_dim: int = 16
    action_dim: int | None = None
    episodes_per_trial: int = 16
    num_train_tasks: int = 2**20
    num_test_tasks: int = 2**10
    task_seed: int = 0
    permute_actions: bool = True


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Which env and how it is wrapped; `kwargs` go to `ssmrl.envs.make`."""

    name: str = "RepeatPrevious-Easy"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_envs: int = 64
    prev_action_reward: bool = True
    normalize_obs: bool = False
    meta: MetaConfig | None = None


def make_env(cfg: EnvConfig, num_envs: int | None = None, split: Literal["train", "test"] = "train"):
    """(vectorised env, params) for `cfg`; `num_envs` overrides cfg.num_envs; `split` picks meta-RL tasks."""
    env, params = envs.make(cfg.name, **cfg.kwargs)
    if not (isinstance(env.observation_space(params), spaces.Box) and len(env.observation_space(params).shape) == 1):
        env = FlattenObservation(env)
    if cfg.meta is not None:
        env = MetaRL(env, params, split=split, **dataclasses.asdict(cfg.meta))
        params = env.default_params
    env = LogWrapper(env, episode_key="episode_done" if cfg.meta is not None else None)
    if cfg.prev_action_reward:
        env = PrevActionReward(env)
    env = VecEnv(env, num_envs or cfg.num_envs)
    if cfg.normalize_obs:
        env = NormalizeObservation(env)
    return env, params

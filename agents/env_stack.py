"""The env a single-agent trainer acts in, built from an `EnvConfig`.

Stack (inside out): `ssmrl.envs.make(name, **kwargs)` -> FlattenObservation (non-flat observations) -> MetaRL (when
`meta` is set) -> LogWrapper (inner episodes of a trial when meta) -> PrevActionReward (when
`prev_action_reward`) -> VecEnv(num_envs) -> NormalizeObservation (when `normalize_obs`, statistics shared by
all envs). A registered meta-RL task (`ssmrl.envs.meta.META_ENVS`, e.g. "MetaStatelessCartPole") is already a
MetaRL: it is made with the split's tasks and logged per inner episode like a `meta` config.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from gymnax.environments import spaces

import ssmrl.envs as envs
from ssmrl.envs.meta import MetaRL, is_meta_env
from ssmrl.envs.wrappers import FlattenObservation, LogWrapper, NormalizeObservation, PrevActionReward, VecEnv


@dataclasses.dataclass(frozen=True)
class MetaConfig:
    """`ssmrl.envs.meta.MetaRL` options: trials of random projections of the base env (Lu et al. 2023).

    `same_initial_state`, `prev_action_obs`, `trial_start_obs`: the options of popjaxrl's released task (its
    registered form is the env "MetaStatelessCartPole", which takes no `meta` section)."""

    obs_dim: int = 16
    action_dim: int | None = None
    episodes_per_trial: int = 16
    num_train_tasks: int = 2**20
    num_test_tasks: int = 2**10
    task_seed: int = 0
    permute_actions: bool = True
    same_initial_state: bool = False
    prev_action_obs: bool = False
    trial_start_obs: bool = False


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """Which env and how it is wrapped; `kwargs` go to `ssmrl.envs.make`."""

    name: str = "RepeatPrevious-Easy"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_envs: int = 64
    prev_action_reward: bool = True
    normalize_obs: bool = False
    meta: MetaConfig | None = None


def is_meta(cfg: EnvConfig) -> bool:
    """Whether `cfg` is an in-context meta-RL env: a `meta` section, or a registered meta-RL task."""
    return cfg.meta is not None or is_meta_env(cfg.name)


def make_env(cfg: EnvConfig, num_envs: int | None = None, split: Literal["train", "test"] = "train"):
    """(vectorised env, params) for `cfg`; `num_envs` overrides cfg.num_envs; `split` picks meta-RL tasks.

    For meta-RL configs `params` is the `ssmrl.envs.meta.MetaParams` (`episodes_per_trial`)."""
    registered_meta = is_meta_env(cfg.name)
    if registered_meta and cfg.meta is not None:
        raise ValueError(f"env {cfg.name!r} is already a meta-RL task: drop env.meta (its options are env.kwargs)")
    if registered_meta and "split" in cfg.kwargs:
        raise ValueError(f"{cfg.name!r} takes its split from the trainer (train) and evaluate's --split, "
                         "not from env.kwargs.split")
    env, params = envs.make(cfg.name, **cfg.kwargs, **({"split": split} if registered_meta else {}))
    if not (isinstance(env.observation_space(params), spaces.Box) and len(env.observation_space(params).shape) == 1):
        env = FlattenObservation(env)
    if cfg.meta is not None:
        env = MetaRL(env, params, split=split, **dataclasses.asdict(cfg.meta))
        params = env.default_params
    env = LogWrapper(env, episode_key="episode_done" if is_meta(cfg) else None)
    if cfg.prev_action_reward:
        env = PrevActionReward(env)
    env = VecEnv(env, num_envs or cfg.num_envs)
    if cfg.normalize_obs:
        env = NormalizeObservation(env)
    return env, params

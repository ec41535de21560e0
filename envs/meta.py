"""In-context (meta-) RL tasks as in Lu et al. 2023, "Structured State Space Models for In-Context
Reinforcement Learning" (NeurIPS 2023).

Their meta-RL setting gives the agent a base env seen through a randomly sampled linear projection of
its observations (and of its actions, for continuous control), resampled for every trial; a trial is
several episodes of the same task, and the agent keeps its recurrent state across the episodes of a
trial, so it must identify the task in context and improve from episode to episode. :class:`MetaRL`
builds that setting on top of any single-agent env with gymnax's API and flat observations:

* task = (observation projection, action map), drawn once per trial and fixed within it:
  observations `[D]` -> ``obs @ W_obs`` `[obs_dim]` with ``W_obs`` a random orthogonal `[D, obs_dim]`
  matrix scaled by ``obs_scale`` (sqrt(2): the orthogonal-init projection of the authors' release);
  continuous actions: the agent acts in ``Box(-1, 1, (action_dim,))``, the env receives
  ``clip(a @ W_act, -1, 1)`` (``W_act`` random orthogonal `[action_dim, A]`) rescaled to its action
  bounds; discrete actions: a random permutation of the ``n`` actions (``permute_actions=False``
  leaves them unchanged, which is what the authors' released discrete Meta-CartPole does).
* observation = ``[obs @ W_obs, episode_done]`` `[obs_dim + 1]`: the flag marks the first observation of a
  new inner episode (the inner env auto-resets inside the trial). Wrap with
  :class:`ssmrl.envs.wrappers.PrevActionReward` to also show the previous action and reward.
* ``terminated`` is true only at the end of a trial (after ``params.episodes_per_trial`` inner
  episodes), so an agent that resets its memory on ``done`` keeps it across the episodes of a trial;
  ``info["episode_done"]`` marks inner-episode boundaries and ``info["task_id"]`` names the task.
  ``envs.wrappers.LogWrapper(env, episode_key="episode_done")`` logs per-episode returns.
* held-out tasks: task ids are split into disjoint seed sets, ``[0, num_train_tasks)`` for
  ``split="train"`` and ``[num_train_tasks, num_train_tasks + num_test_tasks)`` for ``split="test"``;
  a task's matrices are a pure function of ``(task_seed, task_id)``, so test tasks are never seen in
  training. These are unseen projections from the training distribution; for out-of-distribution
  evaluation as in the paper (held-out base environments), train on MetaRL over some base envs and
  evaluate on MetaRL over others with the same ``obs_dim``/``action_dim`` (and ``split="test"``).

Simplifications: one base env per :class:`MetaRL` (mix envs across the batch instead of sampling
the env inside the trial); inner episodes restart from fresh random resets (the authors' release
restarts every episode of a trial from the trial's first initial state).

Usage::

    env, params = envs.make("brax/halfcheetah")
    meta = PrevActionReward(MetaRL(env, params, obs_dim=16, action_dim=6, episodes_per_trial=4))
"""

import math
from typing import Any

import chex
import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

from ssmrl.envs.wrappers import box_bounds, positive_int
from ssmrl.ssm.initializers import orthogonal

SPLITS = ("train", "test")


@chex.dataclass(frozen=True)
class MetaParams:
    """Params of the base env and the number of inner episodes in a trial."""

    env_params: Any
    episodes_per_trial: int


@chex.dataclass(frozen=True)
class MetaState:
    """Base env state, the trial's task and the inner episodes finished so far.

    ``action_map``: float32 `[action_dim, A]` (continuous) or the int32 permutation `[n]` (discrete).
    """

    env_state: Any
    task_id: jax.Array
    obs_projection: jax.Array
    action_map: jax.Array
    episode: jax.Array


class MetaRL(environment.Environment):
    """Trials of randomly projected tasks over a base env (see the module docstring).

    Args:
        env, env_params: the base env (flat Box observations; Discrete or 1-D Box actions) and its params.
        obs_dim: size of the projected observation.
        action_dim: size of the agent's continuous action (default: the base env's); unused for discrete.
        episodes_per_trial: inner episodes per trial (default 16, as in the authors' release).
        split: ``"train"`` or ``"test"`` task ids; num_train_tasks, num_test_tasks: sizes of the splits.
        task_seed: seed of the task -> matrices map (same seed and id, same task).
        obs_scale: gain of the orthogonal observation projection.
        permute_actions: permute discrete actions per task.
    """

    def __init__(
        self, env: Any, env_params: Any, obs_dim: int = 16, action_dim: int | None = None,
        episodes_per_trial: int = 16, split: str = "train", num_train_tasks: int = 2**20,
        num_test_tasks: int = 2**10, task_seed: int = 0, obs_scale: float = math.sqrt(2.0),
        permute_actions: bool = True,
    ):
        super().__init__()
        obs_space, action_space = env.observation_space(env_params), env.action_space(env_params)
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(f"MetaRL needs flat Box observations, got {obs_space!r}; use FlattenObservation")
        if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
            self._discrete = False
            self.action_dim = positive_int("action_dim", action_dim or action_space.shape[0])
            self._action_low, self._action_high = box_bounds(action_space)
        elif isinstance(action_space, spaces.Discrete):
            self._discrete = True
            self.action_dim = int(action_space.n)
        else:
            raise ValueError(f"MetaRL needs Discrete or 1-D Box actions, got {action_space!r}")
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; accepted: {list(SPLITS)}")
        self._env, self._env_params = env, env_params
        self._env_action_space = action_space
        self.obs_dim = positive_int("obs_dim", obs_dim)
        self.episodes_per_trial = positive_int("episodes_per_trial", episodes_per_trial)
        self.split = split
        self.num_train_tasks = positive_int("num_train_tasks", num_train_tasks)
        self.num_test_tasks = positive_int("num_test_tasks", num_test_tasks)
        self.task_seed, self.obs_scale, self.permute_actions = int(task_seed), float(obs_scale), permute_actions
        self._base_obs_dim = int(obs_space.shape[0])

    @property
    def default_params(self) -> MetaParams:
        return MetaParams(env_params=self._env_params, episodes_per_trial=self.episodes_per_trial)

    @property
    def name(self) -> str:
        return f"MetaRL({self._env.name})"

    @property
    def num_actions(self) -> int:
        return self.action_dim

    def task_ids(self) -> range:
        """The task ids of this env's split."""
        start = 0 if self.split == "train" else self.num_train_tasks
        return range(start, start + (self.num_train_tasks if self.split == "train" else self.num_test_tasks))

    def task(self, task_id: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(obs_projection [D, obs_dim], action_map)`` of a task: a pure function of its id."""
        key_obs, key_act = jax.random.split(jax.random.fold_in(jax.random.key(self.task_seed), task_id))
        obs_projection = orthogonal(self.obs_scale)(
            key_obs, (self._base_obs_dim, self.obs_dim), jnp.float32
        )
        if not self._discrete:
            action_map = orthogonal(1.0)(
                key_act, (self.action_dim, self._env_action_space.shape[0]), jnp.float32
            )
        elif self.permute_actions:
            action_map = jax.random.permutation(key_act, self.action_dim).astype(jnp.int32)
        else:
            action_map = jnp.arange(self.action_dim, dtype=jnp.int32)
        return obs_projection, action_map

    def _observe(self, obs: jax.Array, projection: jax.Array, episode_start: jax.Array) -> jax.Array:
        projected = jnp.asarray(obs, jnp.float32) @ projection
        return jnp.concatenate([projected, jnp.asarray(episode_start, jnp.float32)[None]])

    def env_action(self, action_map: jax.Array, action: jax.Array) -> jax.Array:
        """The base env's action for the agent's ``action`` under a task's ``action_map``."""
        if self._discrete:
            return action_map[action]
        unit = jnp.clip(jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0) @ action_map, -1.0, 1.0)
        return self._action_low + (unit + 1.0) * 0.5 * (self._action_high - self._action_low)

    def reset_env(self, key: jax.Array, params: MetaParams) -> tuple[jax.Array, MetaState]:
        key_task, key_env = jax.random.split(key)
        ids = self.task_ids()
        task_id = ids.start + jax.random.randint(key_task, (), 0, len(ids), dtype=jnp.int32)
        obs_projection, action_map = self.task(task_id)
        obs, env_state = self._env.reset(key_env, params.env_params)
        state = MetaState(
            env_state=env_state, task_id=task_id, obs_projection=obs_projection, action_map=action_map,
            episode=jnp.int32(0),
        )
        return self._observe(obs, obs_projection, jnp.bool_(False)), state

    def step_env(
        self, key: jax.Array, state: MetaState, action: jax.Array, params: MetaParams
    ) -> tuple[jax.Array, MetaState, jax.Array, jax.Array, dict]:
        obs, env_state, reward, terminated, truncated, _ = self._env.step(
            key, state.env_state, self.env_action(state.action_map, action), params.env_params
        )
        episode_done = jnp.logical_or(terminated, truncated)
        episode = state.episode + episode_done.astype(jnp.int32)
        state = state.replace(env_state=env_state, episode=episode)
        info = {"episode_done": episode_done, "task_id": state.task_id}
        trial_done = episode >= params.episodes_per_trial
        return self._observe(obs, state.obs_projection, episode_done), state, reward, trial_done, info

    def is_truncated(self, state: MetaState, params: MetaParams) -> jax.Array:
        """Trials end only after their episodes (``terminated``), never by a time limit."""
        return jnp.bool_(False)

    def observation_space(self, params: MetaParams) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, (self.obs_dim + 1,), jnp.float32)

    def action_space(self, params: MetaParams) -> spaces.Discrete | spaces.Box:
        if self._discrete:
            return spaces.Discrete(self.action_dim)
        return spaces.Box(-1.0, 1.0, (self.action_dim,), jnp.float32)

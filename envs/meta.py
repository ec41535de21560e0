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

* options that reproduce the authors' released discrete task (all off by default):
  ``same_initial_state`` restarts every inner episode of a trial from the trial's first initial state
  (and first observation) instead of a fresh random reset; ``prev_action_obs`` appends the previous
  action (discrete: its index as a float; continuous: the agent's action vector; 0 at a trial's
  start) before the episode flag; ``trial_start_obs`` appends a flag that is 1 on the first
  observation of a trial. Observation = ``[obs @ W_obs, (prev action), episode_done, (trial_start)]``.

Simplifications: one base env per :class:`MetaRL` (mix envs across the batch instead of sampling
the env inside the trial); by default inner episodes restart from fresh random resets.

Registered tasks: ``envs.make("MetaStatelessCartPole")`` (alias ``"NoisyStatelessMetaCartPole"``,
popjaxrl's name) is popjaxrl's meta task, see :func:`make_meta_stateless_cartpole`.

Terminology: here a *trial* is the outer unit (the agent's episode, one task) made of inner
*episodes*; popjaxrl and the paper call the outer unit an episode and the inner one a trial.

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

from ssmrl.envs.env_kwargs import split_kwargs
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
    ``start_state``/``start_obs``: the trial's first base env state and observation with
    ``same_initial_state`` (every inner episode restarts from them), else None.
    """

    env_state: Any
    task_id: jax.Array
    obs_projection: jax.Array
    action_map: jax.Array
    episode: jax.Array
    start_state: Any = None
    start_obs: Any = None


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
        same_initial_state: every inner episode of a trial restarts from the trial's first initial state.
        prev_action_obs: append the previous action to the observation (before the episode flag).
        trial_start_obs: append a flag that is 1 on a trial's first observation (after the episode flag).
    """

    def __init__(
        self, env: Any, env_params: Any, obs_dim: int = 16, action_dim: int | None = None,
        episodes_per_trial: int = 16, split: str = "train", num_train_tasks: int = 2**20,
        num_test_tasks: int = 2**10, task_seed: int = 0, obs_scale: float = math.sqrt(2.0),
        permute_actions: bool = True, same_initial_state: bool = False, prev_action_obs: bool = False,
        trial_start_obs: bool = False,
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
        self.same_initial_state = bool(same_initial_state)
        self.prev_action_obs, self.trial_start_obs = bool(prev_action_obs), bool(trial_start_obs)

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

    @property
    def _prev_action_size(self) -> int:
        if not self.prev_action_obs:
            return 0
        return 1 if self._discrete else self.action_dim

    def _observe(
        self, obs: jax.Array, projection: jax.Array, prev_action: jax.Array, episode_start: jax.Array,
        trial_start: bool,
    ) -> jax.Array:
        parts = [jnp.asarray(obs, jnp.float32) @ projection]
        if self.prev_action_obs:
            parts.append(jnp.reshape(jnp.asarray(prev_action, jnp.float32), (self._prev_action_size,)))
        parts.append(jnp.asarray(episode_start, jnp.float32)[None])
        if self.trial_start_obs:
            parts.append(jnp.full((1,), float(trial_start), jnp.float32))
        return jnp.concatenate(parts)

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
            start_state=env_state if self.same_initial_state else None,
            start_obs=obs if self.same_initial_state else None,
        )
        no_action = jnp.zeros((self._prev_action_size,), jnp.float32)
        return self._observe(obs, obs_projection, no_action, jnp.bool_(False), True), state

    def step_env(
        self, key: jax.Array, state: MetaState, action: jax.Array, params: MetaParams
    ) -> tuple[jax.Array, MetaState, jax.Array, jax.Array, dict]:
        obs, env_state, reward, terminated, truncated, _ = self._env.step(
            key, state.env_state, self.env_action(state.action_map, action), params.env_params
        )
        episode_done = jnp.logical_or(terminated, truncated)
        if self.same_initial_state:  # the base env auto-reset to a fresh state: restart from the trial's first
            env_state = jax.tree.map(lambda s, x: jnp.where(episode_done, s, x), state.start_state, env_state)
            obs = jnp.where(episode_done, state.start_obs, obs)
        episode = state.episode + episode_done.astype(jnp.int32)
        state = state.replace(env_state=env_state, episode=episode)
        info = {"episode_done": episode_done, "task_id": state.task_id}
        trial_done = episode >= params.episodes_per_trial
        obs = self._observe(obs, state.obs_projection, action, episode_done, False)
        return obs, state, reward, trial_done, info

    def is_truncated(self, state: MetaState, params: MetaParams) -> jax.Array:
        """Trials end only after their episodes (``terminated``), never by a time limit."""
        return jnp.bool_(False)

    def observation_space(self, params: MetaParams) -> spaces.Box:
        size = self.obs_dim + self._prev_action_size + 1 + int(self.trial_start_obs)
        return spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)

    def action_space(self, params: MetaParams) -> spaces.Discrete | spaces.Box:
        if self._discrete:
            return spaces.Discrete(self.action_dim)
        return spaces.Box(-1.0, 1.0, (self.action_dim,), jnp.float32)


# ---- registered tasks ------------------------------------------------------------------------------------------

META_CARTPOLE_KWARGS = ("split", "episodes_per_trial", "max_episode_length", "num_train_tasks", "num_test_tasks",
                        "task_seed")


def make_meta_stateless_cartpole(**kwargs: Any) -> tuple[MetaRL, MetaParams]:
    """popjaxrl's meta task (Lu et al. 2023, "Randomly-Projected CartPole In-Context"), as ``(env, params)``.

    Source: github.com/luchris429/popjaxrl, ``envs/environments/meta_cartpole.py``
    (``NoisyStatelessMetaCartPole``) over ``envs/environments/popgym_cartpole.py``
    (``NoisyStatelessCartPole(max_steps_in_episode=200, noise_sigma=0.0)``). The same task here:

    * base env: POPGym's stateless CartPole without noise (:class:`PositionOnlyCartPole`, observation
      ``(x, theta)`` clipped to twice the thresholds), inner episodes (popjaxrl: trials) of at most 200
      steps; reward 1/200 per step, the step on which the pole falls included (popjaxrl's -1 branch
      never fires: its meta env restarts a finished trial at once), so an inner episode returns the
      fraction of 200 steps survived, in (0, 1], and a trial (popjaxrl: episode) at most 16.
    * 16 inner episodes per trial, all from the trial's one initial state ``U(-0.05, 0.05)^4``.
    * observation ``[7]`` = ``[W (x, theta) [4], previous action, episode_done, trial_start]``: ``W`` is
      ``Dense(4)`` with orthogonal kernel init of gain sqrt(2) and zero bias (``[2, 4]``), drawn at the
      start of every trial and fixed within it; previous action 0/1 (0 at a trial's start);
      ``episode_done`` 1 on the observation after an inner episode ended (the restart observation);
      ``trial_start`` 1 on the first observation of a trial. Actions Discrete(2), not permuted.

    Deviations: popjaxrl draws the projection from the reset key, from a continuous distribution; here it
    comes from a task id, so that held-out projections exist: ``split="train"`` draws among
    ``num_train_tasks`` (2^20) ids, ``split="test"`` among ``num_test_tasks`` (2^10) disjoint ones
    (:class:`MetaRL`). popjaxrl's training stack also wraps the env in ``AliasPrevActionV2`` (one-hot previous
    action and a first-step flag appended, ``run_popgym.py``); ssmrl's PPO appends the one-hot previous action
    and the previous reward instead (``env.prev_action_reward``, see ``configs/ppo_meta_cartpole.yaml``).
    The paper's text also projects actions; popjaxrl's code does not, and neither does this env.

    Kwargs: ``split``, ``episodes_per_trial`` (16), ``max_episode_length`` (200), ``num_train_tasks``,
    ``num_test_tasks``, ``task_seed``.
    """
    from ssmrl.envs.popgym.cartpole import PositionOnlyCartPole

    split_kwargs("MetaStatelessCartPole", kwargs, META_CARTPOLE_KWARGS, None)  # ValueError on unknown kwargs
    base = PositionOnlyCartPole(max_episode_length=kwargs.pop("max_episode_length", 200), noise_sigma=0.0)
    env = MetaRL(
        base, base.default_params, obs_dim=4, episodes_per_trial=kwargs.pop("episodes_per_trial", 16),
        obs_scale=math.sqrt(2.0), permute_actions=False, same_initial_state=True, prev_action_obs=True,
        trial_start_obs=True, **kwargs,
    )
    return env, env.default_params


META_ENVS = {"MetaStatelessCartPole": make_meta_stateless_cartpole}
"""Registered meta-RL tasks: name -> ``factory(**kwargs) -> (env, params)``; they accept ``split``."""
META_ALIASES = {"NoisyStatelessMetaCartPole": "MetaStatelessCartPole"}
"""popjaxrl's names of the registered meta-RL tasks."""


def is_meta_env(name: str) -> bool:
    """Whether ``name`` (canonical or alias) is a registered meta-RL task, built with a ``split`` kwarg."""
    return name in META_ENVS or name in META_ALIASES

"""Composable wrappers for single-agent envs with gymnax's API.

Every wrapper takes and returns the gymnax API of the installed gymnax: ``reset(key, params) -> (obs,
state)`` and ``step(key, state, action, params) -> (obs, state, reward, terminated, truncated, info)``
with auto-reset inside ``step`` (``info["final_observation"]`` holds the last observation of an
episode that just ended). All wrappers are pure functions of their inputs (jit/vmap-able; jit the
caller) and update ``observation_space`` to match the observations they return.

Wrappers are batch-agnostic: they may sit inside :class:`VecEnv` (one wrapper state per env) or
outside it (observations ``[N, ...]``; the leading batch axes are found from the observation space's
rank). :class:`NormalizeObservation` outside :class:`VecEnv` shares its statistics across envs.

Typical stack::

    env, params = envs.make("RepeatPrevious-Easy")
    env = VecEnv(LogWrapper(PrevActionReward(env)), num_envs=64)
"""

import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment, spaces
from jax.experimental import checkify


def where_tree(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """Leafwise ``pred ? on_true : on_false``; ``pred`` `[B...]` broadcasts over trailing leaf axes."""

    def select(x: jax.Array, y: jax.Array) -> jax.Array:
        x, y = jnp.asarray(x), jnp.asarray(y)
        p = jnp.reshape(pred, jnp.shape(pred) + (1,) * (max(x.ndim, y.ndim) - jnp.ndim(pred)))
        return jnp.where(p, x, y)

    return jax.tree.map(select, on_true, on_false)


def box_bounds(space: spaces.Box) -> tuple[jax.Array, jax.Array]:
    """``(low, high)`` of a Box broadcast to its full shape, float32 (traceable: bounds may depend on params)."""
    low = jnp.broadcast_to(jnp.asarray(space.low, jnp.float32), space.shape)
    high = jnp.broadcast_to(jnp.asarray(space.high, jnp.float32), space.shape)
    return low, high


def positive_int(name: str, value: Any) -> int:
    """``value`` as int if it is an integer >= 1, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _flat_box(space: Any, wrapper: str) -> spaces.Box:
    """``space`` if it is a 1-D Box, else ValueError naming ``wrapper``."""
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        raise ValueError(
            f"{wrapper} needs a flat Box observation space, got {space!r}; wrap with FlattenObservation first"
        )
    return space


class Wrapper(environment.Environment):
    """Base wrapper: forwards the whole gymnax API (and unknown attributes) to the wrapped env."""

    def __init__(self, env: Any):
        super().__init__()
        self._env = env

    def __getattr__(self, name: str) -> Any:
        if name == "_env":  # not yet set (e.g. during unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self._env, name)

    @property
    def unwrapped(self) -> Any:
        """The innermost env."""
        return getattr(self._env, "unwrapped", self._env)

    @property
    def default_params(self) -> Any:
        return self._env.default_params

    @property
    def name(self) -> str:
        return self._env.name

    @property
    def num_actions(self) -> int:
        return self._env.num_actions

    def params_or_default(self, params: Any) -> Any:
        return self.default_params if params is None else params

    def observation_space(self, params: Any) -> Any:
        return self._env.observation_space(params)

    def action_space(self, params: Any) -> Any:
        return self._env.action_space(params)

    def batch_shape(self, obs: jax.Array, params: Any) -> tuple[int, ...]:
        """Leading batch axes of a wrapped-env ``obs`` (``()`` for one env, ``(N,)`` outside a VecEnv)."""
        rank = len(self._env.observation_space(self.params_or_default(params)).shape)
        return tuple(obs.shape[: obs.ndim - rank])

    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, Any]:
        return self._env.reset(key, params)

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> tuple:
        return self._env.step(key, state, action, params)


class ObservationWrapper(Wrapper):
    """Base of stateless observation transforms: applies :meth:`transform` to every observation.

    ``transform(obs, params, reset, action, reward)``: ``reset`` is bool `[B...]`, true where ``obs``
    starts an episode; ``action``/``reward`` are those of the step that returned ``obs`` (zeros after
    ``reset``). ``info["final_observation"]`` is transformed too, with ``reset`` false.
    """

    def transform(self, obs: jax.Array, params: Any, reset: jax.Array, action: Any, reward: jax.Array):
        raise NotImplementedError

    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, Any]:
        obs, state = self._env.reset(key, params)
        batch = self.batch_shape(obs, params)
        zeros_action = jnp.zeros(batch + self.action_space(self.params_or_default(params)).shape)
        return self.transform(obs, params, jnp.ones(batch, bool), zeros_action, jnp.zeros(batch)), state

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> tuple:
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        done = jnp.logical_or(terminated, truncated)
        info = dict(info)
        if "final_observation" in info:
            not_done = jnp.zeros_like(done)
            info["final_observation"] = self.transform(info["final_observation"], params, not_done, action, reward)
        return self.transform(obs, params, done, action, reward), state, reward, terminated, truncated, info


class FlattenObservation(ObservationWrapper):
    """Flattens each observation to a vector: `[B..., *shape]` -> `[B..., prod(shape)]`."""

    def observation_space(self, params: Any) -> spaces.Box:
        space = self._env.observation_space(params)
        if not isinstance(space, spaces.Box):
            raise ValueError(f"FlattenObservation needs a Box observation space, got {space!r}")
        low, high = box_bounds(space)
        return spaces.Box(low.reshape(-1), high.reshape(-1), (int(np.prod(space.shape)),), space.dtype)

    def transform(self, obs, params, reset, action, reward):
        return jnp.reshape(obs, self.batch_shape(obs, params) + (-1,))


class PrevActionReward(ObservationWrapper):
    """Appends the previous action and reward to the (flat) observation, as in-context RL needs.

    Observation `[D]` -> `[D + A + 1]`: ``A`` = one-hot of the previous action for ``Discrete(A)``
    actions, the raw previous action for ``Box((A,))`` actions, then the previous reward. Both are
    zero in the first observation of an episode (after ``reset`` and after an auto-reset).
    """

    def _action_size(self, params: Any) -> int:
        space = self._env.action_space(params)
        if isinstance(space, spaces.Discrete):
            return int(space.n)
        if isinstance(space, spaces.Box) and len(space.shape) == 1:
            return int(space.shape[0])
        raise ValueError(f"PrevActionReward needs a Discrete or 1-D Box action space, got {space!r}")

    def observation_space(self, params: Any) -> spaces.Box:
        obs_low, obs_high = box_bounds(_flat_box(self._env.observation_space(params), "PrevActionReward"))
        action_space = self._env.action_space(params)
        size = self._action_size(params)
        if isinstance(action_space, spaces.Discrete):
            act_low, act_high = jnp.zeros(size, jnp.float32), jnp.ones(size, jnp.float32)
        else:
            act_low, act_high = box_bounds(action_space)
        low = jnp.concatenate([obs_low, act_low, jnp.array([-jnp.inf], jnp.float32)])
        high = jnp.concatenate([obs_high, act_high, jnp.array([jnp.inf], jnp.float32)])
        return spaces.Box(low, high, tuple(low.shape), jnp.float32)

    def transform(self, obs, params, reset, action, reward):
        params = self.params_or_default(params)
        _flat_box(self._env.observation_space(params), "PrevActionReward")
        size = self._action_size(params)
        if isinstance(self._env.action_space(params), spaces.Discrete):
            prev_action = jax.nn.one_hot(action, size, dtype=jnp.float32)
        else:
            prev_action = jnp.asarray(action, jnp.float32)
        extra = jnp.concatenate([prev_action, jnp.asarray(reward, jnp.float32)[..., None]], axis=-1)
        extra = jnp.where(jnp.asarray(reset)[..., None], 0.0, extra)
        return jnp.concatenate([jnp.asarray(obs, jnp.float32), extra], axis=-1)


@chex.dataclass(frozen=True)
class LogState:
    """:class:`LogWrapper` state; counters are `[B...]` (scalars for a single env)."""

    env_state: Any
    episode_return: jax.Array
    episode_length: jax.Array
    returned_episode_return: jax.Array
    returned_episode_length: jax.Array

    @classmethod
    def start(cls, env_state: Any, batch: tuple[int, ...]) -> "LogState":
        """Zero counters of shape `batch`."""
        zero_f, zero_i = jnp.zeros(batch, jnp.float32), jnp.zeros(batch, jnp.int32)
        return cls(
            env_state=env_state, episode_return=zero_f, episode_length=zero_i,
            returned_episode_return=zero_f, returned_episode_length=zero_i,
        )

    def record(self, env_state: Any, reward: jax.Array, done: jax.Array) -> "LogState":
        """The counters after a step with `reward`; `done` ends the episode (its return and length are kept)."""
        ep_return = self.episode_return + jnp.asarray(reward, jnp.float32)
        ep_length = self.episode_length + 1
        return LogState(
            env_state=env_state,
            episode_return=jnp.where(done, 0.0, ep_return),
            episode_length=jnp.where(done, 0, ep_length),
            returned_episode_return=jnp.where(done, ep_return, self.returned_episode_return),
            returned_episode_length=jnp.where(done, ep_length, self.returned_episode_length),
        )

    def info(self, done: jax.Array) -> dict[str, jax.Array]:
        """The ``info`` entries :class:`LogWrapper` reports."""
        return {
            "returned_episode_returns": self.returned_episode_return,
            "returned_episode_lengths": self.returned_episode_length,
            "returned_episode": done,
        }


class LogWrapper(Wrapper):
    """Tracks episode return and length inside jit and reports them in ``info``.

    ``info["returned_episode"]`` is true on the step that ends an episode; ``returned_episode_returns``
    and ``returned_episode_lengths`` then hold that episode's return and length, and keep the last
    finished episode's values until the next one ends (zeros before the first). By default an
    episode ends at ``terminated | truncated``; pass ``episode_key="episode_done"`` to end episodes
    at an info flag instead (e.g. the inner episodes of :class:`ssmrl.envs.meta.MetaRL` trials).
    """

    def __init__(self, env: Any, episode_key: str | None = None):
        super().__init__(env)
        self.episode_key = episode_key

    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, LogState]:
        obs, env_state = self._env.reset(key, params)
        return obs, LogState.start(env_state, self.batch_shape(obs, params))

    def step(self, key: jax.Array, state: LogState, action: Any, params: Any = None) -> tuple:
        obs, env_state, reward, terminated, truncated, info = self._env.step(key, state.env_state, action, params)
        if self.episode_key is None:
            done = jnp.logical_or(terminated, truncated)
        else:
            done = jnp.asarray(info[self.episode_key], bool)
        state = state.record(env_state, reward, done)
        return obs, state, reward, terminated, truncated, {**info, **state.info(done)}


@chex.dataclass(frozen=True)
class NormalizeState:
    """:class:`NormalizeObservation` state: running mean/var `[*obs_shape]` over ``count`` samples."""

    env_state: Any
    mean: jax.Array
    var: jax.Array
    count: jax.Array


class NormalizeObservation(Wrapper):
    """Normalises observations by a running mean and variance kept in the wrapper state (optional).

    Statistics are updated with every observation returned by ``reset`` and ``step`` (all envs of a
    batch at once when outside :class:`VecEnv`, merged with Chan et al.'s parallel update), then
    ``(obs - mean) / sqrt(var + eps)`` is clipped to ``[-clip, clip]``. ``update=False`` freezes the
    statistics (e.g. for evaluation with a state carried over from training).
    """

    def __init__(self, env: Any, clip: float = 10.0, eps: float = 1e-8, update: bool = True):
        super().__init__(env)
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip!r}")
        self.clip, self.eps, self.update = float(clip), float(eps), bool(update)

    def observation_space(self, params: Any) -> spaces.Box:
        space = self._env.observation_space(params)
        return spaces.Box(-self.clip, self.clip, space.shape, jnp.float32)

    def _update(self, state: NormalizeState, obs: jax.Array, batch_ndim: int) -> NormalizeState:
        if not self.update:
            return state
        obs = jnp.asarray(obs, jnp.float32)
        axes = tuple(range(batch_ndim))
        batch_count = float(np.prod(obs.shape[:batch_ndim]))
        batch_mean, batch_var = jnp.mean(obs, axis=axes), jnp.var(obs, axis=axes)
        total = state.count + batch_count
        delta = batch_mean - state.mean
        mean = state.mean + delta * batch_count / total
        m2 = state.var * state.count + batch_var * batch_count + delta**2 * state.count * batch_count / total
        return state.replace(mean=mean, var=m2 / total, count=total)

    def normalize(self, state: NormalizeState, obs: jax.Array) -> jax.Array:
        """`obs` normalised by the statistics in `state`, clipped to [-clip, clip] (statistics not updated)."""
        normalized = (jnp.asarray(obs, jnp.float32) - state.mean) / jnp.sqrt(state.var + self.eps)
        return jnp.clip(normalized, -self.clip, self.clip)

    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, NormalizeState]:
        obs, env_state = self._env.reset(key, params)
        shape = self._env.observation_space(self.params_or_default(params)).shape
        state = NormalizeState(
            env_state=env_state, mean=jnp.zeros(shape, jnp.float32), var=jnp.ones(shape, jnp.float32),
            count=jnp.asarray(1e-4, jnp.float32),
        )
        state = self._update(state, obs, len(self.batch_shape(obs, params)))
        return self.normalize(state, obs), state

    def step(self, key: jax.Array, state: NormalizeState, action: Any, params: Any = None) -> tuple:
        obs, env_state, reward, terminated, truncated, info = self._env.step(key, state.env_state, action, params)
        state = self._update(state.replace(env_state=env_state), obs, len(self.batch_shape(obs, params)))
        info = dict(info)
        if "final_observation" in info:
            info["final_observation"] = self.normalize(state, info["final_observation"])
        return self.normalize(state, obs), state, reward, terminated, truncated, info


def invalid_actions(space: Any, action: Any) -> jax.Array:
    """bool `[B...]`: where ``action`` (with any leading batch axes `[B...]`) is not in ``space``: out of range,
    NaN or inf, or a non-integer for ``Discrete``. ``Box`` actions must end in the space's shape (else ValueError)."""
    if isinstance(space, spaces.Dict):
        return functools.reduce(jnp.logical_or, [invalid_actions(space.spaces[k], action[k]) for k in space.spaces])
    if isinstance(space, spaces.Tuple):
        return functools.reduce(jnp.logical_or, [invalid_actions(sub, a) for sub, a in zip(space.spaces, action,
                                                                                              strict=True)])
    action = jnp.asarray(action)
    if not (jnp.issubdtype(action.dtype, jnp.number) or action.dtype == jnp.bool_):
        raise TypeError(f"CheckActions: actions must be numbers, got dtype {action.dtype}")
    finite = jnp.isfinite(action) if jnp.issubdtype(action.dtype, jnp.inexact) else jnp.ones(action.shape, bool)
    if isinstance(space, spaces.Discrete):
        integral = jnp.floor(action) == action if jnp.issubdtype(action.dtype, jnp.inexact) else True
        return ~(finite & integral & (action >= 0) & (action < space.n))
    if isinstance(space, spaces.Box):
        rank = len(space.shape)
        if action.ndim < rank or action.shape[action.ndim - rank :] != tuple(space.shape):
            raise ValueError(f"CheckActions: action of shape {action.shape} does not end in the Box action space's "
                             f"shape {tuple(space.shape)} (expected [*batch, {', '.join(map(str, space.shape))}])")
        low, high = box_bounds(space)
        ok = finite & (action >= low) & (action <= high)
        return ~ok.all(axis=tuple(range(action.ndim - rank, action.ndim)))
    raise TypeError(f"CheckActions: unsupported action space {space!r}; supported: Discrete, Box, Dict, Tuple")


class CheckActions(Wrapper):
    """Reports actions outside the action space: ``info["invalid_action"]``, bool `[B...]`, on every step.

    gymnax envs do not check their actions inside jit (an out-of-range or NaN action is clipped, wrapped onto a
    real cell or scaled, silently); this wrapper keeps that convention (the action still reaches the env
    unchanged) but says so in ``info``, which works under jit and vmap. Put it right around the env whose action
    space the agent acts in (inside :class:`VecEnv`, or outside it: actions `[N, ...]`). With
    ``checkify=True`` the step also emits a ``jax.experimental.checkify`` check naming the bad action: it raises
    when the caller runs the step under ``checkify.checkify`` (and then the step must be checkified to be jitted).
    """

    def __init__(self, env: Any, checkify: bool = False):
        super().__init__(env)
        self.checkify = checkify

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> tuple:
        space = self._env.action_space(self.params_or_default(params))
        invalid = invalid_actions(space, action)
        if self.checkify:
            first = jax.tree.map(lambda a: jnp.reshape(a, (-1,) + jnp.shape(a)[invalid.ndim:])[jnp.argmax(
                jnp.reshape(invalid, -1))], action)
            checkify.check(~jnp.any(invalid), f"invalid action {{action}} for the action space {space}",
                           action=first)
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return obs, state, reward, terminated, truncated, {**info, "invalid_action": invalid}


@chex.dataclass(frozen=True)
class TimeLimitState:
    """:class:`TimeLimit` state: steps taken in the current episode, int32 `[B...]`."""

    env_state: Any
    steps: jax.Array


class TimeLimit(Wrapper):
    """Truncates episodes after ``max_steps`` steps (on top of the env's own limits).

    On the step that reaches the limit, ``truncated`` is true (unless the env terminated on that
    step), ``info["final_observation"]`` holds the last observation and the env is reset.
    """

    def __init__(self, env: Any, max_steps: int):
        super().__init__(env)
        self.max_steps = positive_int("max_steps", max_steps)

    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, TimeLimitState]:
        obs, env_state = self._env.reset(key, params)
        return obs, TimeLimitState(env_state=env_state, steps=jnp.zeros(self.batch_shape(obs, params), jnp.int32))

    def step(self, key: jax.Array, state: TimeLimitState, action: Any, params: Any = None) -> tuple:
        key_step, key_reset = jax.random.split(key)
        obs, env_state, reward, terminated, truncated, info = self._env.step(
            key_step, state.env_state, action, params
        )
        steps = state.steps + 1
        env_done = jnp.logical_or(terminated, truncated)
        cut = jnp.logical_and(steps >= self.max_steps, jnp.logical_not(env_done))
        reset_obs, reset_state = self._env.reset(key_reset, params)
        info = {**info, "final_observation": where_tree(cut, obs, info.get("final_observation", obs))}
        obs = where_tree(cut, reset_obs, obs)
        env_state = where_tree(cut, reset_state, env_state)
        truncated = jnp.logical_or(truncated, cut)
        steps = jnp.where(jnp.logical_or(env_done, cut), 0, steps)
        return obs, TimeLimitState(env_state=env_state, steps=steps), reward, terminated, truncated, info


class VecEnv(Wrapper):
    """Runs ``num_envs`` copies in parallel with ``jax.vmap``; each auto-resets on its own.

    ``reset(key)`` -> obs `[N, ...]`; ``step(key, state, action [N, ...])`` -> obs `[N, ...]`, reward,
    terminated, truncated `[N]`. Params are shared by all envs. Spaces stay per-env.
    """

    def __init__(self, env: Any, num_envs: int):
        super().__init__(env)
        self.num_envs = positive_int("num_envs", num_envs)

    def reset(self, key: jax.Array, params: Any = None) -> tuple[jax.Array, Any]:
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self._env.reset, in_axes=(0, None))(keys, params)

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> tuple:
        keys = jax.random.split(key, self.num_envs)
        return jax.vmap(self._env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)

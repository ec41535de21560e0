"""Brax's envs (``"brax/ant"``, ...) behind gymnax's API.

:class:`BraxAdapter` is a gymnax ``Environment``: gymnax's ``step`` adds the auto-reset (a fresh
random reset, not brax's cached first state) and the time limit ``params.max_steps_in_episode``
(brax's default episode length, 1000). Actions are ``Box(-1, 1, (action_size,))`` (brax scales them
to the actuator ranges); observations are float32 `[observation_size]`; ``terminated`` is brax's
``done``. The brax env's own options (``backend``, ``n_frames``, reward weights, ...) are
constructor kwargs of :func:`make_brax`.
"""

from functools import cached_property
from typing import Any

import brax.envs
import chex
import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

from ssmrl.envs.env_kwargs import constructor_args, split_kwargs

PREFIX = "brax/"
BRAX_NAMES = (
    "ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
    "inverted_double_pendulum", "pusher", "reacher", "walker2d",
)
"""Brax's control suite: its registry minus ``fast`` (a unit-test stub) and ``swimmer`` (its step calls
``jnp.clip(a_min=...)``, which jax >= 0.10 no longer accepts)."""


@chex.dataclass(frozen=True)
class BraxParams:
    """Runtime params: the step after which an episode is truncated."""

    max_steps_in_episode: int = 1000


@chex.dataclass(frozen=True)
class BraxState:
    """The brax ``State`` and the steps taken in the current episode."""

    brax_state: Any
    time: jax.Array


class BraxAdapter(environment.Environment):
    """A brax env with gymnax's API (see the module docstring)."""

    def __init__(self, env: brax.envs.Env, name: str):
        super().__init__()
        self._env = env
        self._name = name

    @property
    def default_params(self) -> BraxParams:
        return BraxParams()

    @property
    def name(self) -> str:
        return PREFIX + self._name

    @property
    def unwrapped(self) -> brax.envs.Env:
        """The brax env."""
        return self._env

    @property
    def num_actions(self) -> int:
        return int(self._env.action_size)

    @cached_property
    def _state_spec(self) -> Any:
        """Shapes and dtypes of the brax state, from tracing ``reset`` (no physics runs)."""
        return jax.eval_shape(self._env.reset, jax.random.key(0))

    def reset_env(self, key: jax.Array, params: BraxParams) -> tuple[jax.Array, BraxState]:
        brax_state = self._env.reset(key)
        return jnp.asarray(brax_state.obs, jnp.float32), BraxState(brax_state=brax_state, time=jnp.int32(0))

    def step_env(
        self, key: jax.Array, state: BraxState, action: jax.Array, params: BraxParams
    ) -> tuple[jax.Array, BraxState, jax.Array, jax.Array, dict]:
        brax_state = self._env.step(state.brax_state, jnp.asarray(action, jnp.float32))
        # brax steps may return python scalars or other dtypes than reset; keep reset's for auto-reset.
        brax_state = jax.tree.map(lambda spec, x: jnp.asarray(x, spec.dtype), self._state_spec, brax_state)
        return (
            jnp.asarray(brax_state.obs, jnp.float32),
            BraxState(brax_state=brax_state, time=state.time + 1),
            jnp.asarray(brax_state.reward, jnp.float32),
            brax_state.done > 0.5,
            {},
        )

    def observation_space(self, params: BraxParams) -> spaces.Box:
        return spaces.Box(-jnp.inf, jnp.inf, tuple(self._state_spec.obs.shape), jnp.float32)

    def action_space(self, params: BraxParams) -> spaces.Box:
        return spaces.Box(-1.0, 1.0, (self.num_actions,), jnp.float32)


def make_brax(name: str, /, **kwargs: Any) -> tuple[BraxAdapter, BraxParams]:
    """Brax env ``name`` as a :class:`BraxAdapter` with its params.

    ``kwargs``: the brax env class' constructor args (``backend``, ``n_frames``, ...) or
    ``max_steps_in_episode``.
    """
    env = brax.envs.get_environment(name)
    ctor_kwargs, overrides = split_kwargs(PREFIX + name, kwargs, constructor_args(type(env)), BraxParams())
    if ctor_kwargs:
        env = brax.envs.get_environment(name, **ctor_kwargs)
    return BraxAdapter(env, name), BraxParams(**overrides)

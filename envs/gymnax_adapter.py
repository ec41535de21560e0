"""gymnax's own envs (``"CartPole-v1"``, ``"Breakout-MinAtar"``, ...) under the envs contract.

The adapter keeps each env's dynamics, names and params, and only fixes types: observations become
float32 (a few gymnax envs return int32 or declare a dtype their observations do not have), a
``Discrete(n)`` observation (FrozenLake) becomes its float32 one-hot `[n]`, rewards become float32.
Observation shapes are kept (MinAtar stays `[10, 10, C]`; use FlattenObservation for vectors).
Bounds are gymnax's, except for the envs in ``UNRELIABLE_BOUNDS``, declared unbounded.
"""

from typing import Any

import gymnax
import jax
import jax.numpy as jnp
from gymnax.environments import spaces

from ssmrl.envs.env_kwargs import constructor_args, split_kwargs
from ssmrl.envs.wrappers import ObservationWrapper, box_bounds

PREFIX = "gymnax/"
UNRELIABLE_BOUNDS = ("MemoryChain-bsuite", "MetaMaze-misc", "GaussianBandit-misc")
"""gymnax envs whose observations leave their declared bounds (negative rewards, -1 context cues or
normalised times below a declared low of 0)."""


def gymnax_names() -> list[str]:
    """The ids of gymnax's registry (``MNISTBandit-bsuite`` downloads MNIST when built)."""
    return list(gymnax.registered_envs)


class GymnaxAdapter(ObservationWrapper):
    """A gymnax env with float32 observations and rewards (see the module docstring).

    ``unbounded``: declare the observation space ``(-inf, inf)`` instead of gymnax's bounds.
    """

    def __init__(self, env: Any, unbounded: bool = False):
        super().__init__(env)
        self.unbounded = unbounded

    def observation_space(self, params: Any) -> spaces.Box:
        space = self._env.observation_space(params)
        if isinstance(space, spaces.Discrete):
            return spaces.Box(0.0, 1.0, (int(space.n),), jnp.float32)
        if self.unbounded:
            return spaces.Box(-jnp.inf, jnp.inf, tuple(space.shape), jnp.float32)
        low, high = box_bounds(space)
        return spaces.Box(low, high, tuple(space.shape), jnp.float32)

    def transform(self, obs, params, reset, action, reward):
        space = self._env.observation_space(self.params_or_default(params))
        if isinstance(space, spaces.Discrete):
            return jax.nn.one_hot(obs, int(space.n), dtype=jnp.float32)
        return jnp.asarray(obs, jnp.float32)

    def step(self, key: jax.Array, state: Any, action: Any, params: Any = None) -> tuple:
        obs, state, reward, terminated, truncated, info = super().step(key, state, action, params)
        return obs, state, jnp.asarray(reward, jnp.float32), terminated, truncated, info


def make_gymnax(name: str, /, **kwargs: Any) -> tuple[GymnaxAdapter, Any]:
    """``gymnax.make(name)`` wrapped in :class:`GymnaxAdapter`.

    ``kwargs`` are constructor args of the env class (e.g. ``use_minimal_action_set``) or fields of
    its params (e.g. ``max_steps_in_episode=100``), which override the default params.
    """
    env, params = gymnax.make(name)
    ctor_kwargs, overrides = split_kwargs(name, kwargs, constructor_args(type(env)), params)
    if ctor_kwargs:
        env, params = gymnax.make(name, **ctor_kwargs)
    return GymnaxAdapter(env, unbounded=name in UNRELIABLE_BOUNDS), params.replace(**overrides)

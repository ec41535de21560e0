"""jaxmarl's multi-agent envs (``"jaxmarl/MPE_simple_spread_v3"``, ...) with per-agent dicts.

:class:`MultiAgentAdapter` keeps jaxmarl's API, adding the ``params`` argument of gymnax's:
``reset(key, params) -> (obs, state)`` and ``step(key, state, actions, params) -> (obs, state,
rewards, dones, info)``, where ``obs``, ``actions``, ``rewards`` and ``dones`` are dicts keyed by
agent (``dones["__all__"]`` ends the episode; ``step`` auto-resets), plus whatever extra keys the env
puts there (e.g. SMAX's ``obs["world_state"]`` for centralised critics). Observations and rewards
are cast to float32, dones to bool. Spaces are gymnax spaces: ``action_space(params, agent)``,
``observation_space(params, key)``; ``avail_actions(state)`` gives bool masks `[n]` per agent
(discrete-action envs).

jaxmarl envs take their configuration (episode length, number of agents, ...) as constructor
kwargs, so their params are an empty dataclass. Not registered: ``LearnedPolicyEnemySMAX`` (needs a
trained enemy policy), the STORM envs (``storm``, ``storm_2p``, ``storm_np``: a batched-array API,
not per-agent dicts) and the JaxRobotarium envs unless their optional package is installed.
"""

from collections.abc import Mapping
from functools import cached_property
from typing import Any

import chex
import jax
import jax.numpy as jnp
import jaxmarl
import numpy as np
from gymnax.environments import spaces
from jaxmarl.environments import SUBMODULE_ENVIRONMENTS
from jaxmarl.environments import spaces as marl_spaces
from jaxmarl.environments.overcooked import overcooked_layouts
from jaxmarl.environments.smax.heuristic_enemy_smax_env import EnemySMAX
from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO, SMAX

from ssmrl.envs.env_kwargs import constructor_args, split_kwargs

PREFIX = "jaxmarl/"
_EXCLUDED = ("LearnedPolicyEnemySMAX", "storm", "storm_2p", "storm_np")


def jaxmarl_names() -> list[str]:
    """jaxmarl's registered ids that build with default kwargs and use per-agent dicts."""
    return [
        name for name in jaxmarl.registered_envs
        if name not in _EXCLUDED and (SUBMODULE_ENVIRONMENTS or not name.startswith("JaxRobotarium"))
    ]


@chex.dataclass(frozen=True)
class MultiAgentParams:
    """jaxmarl envs have no runtime params (their settings are constructor kwargs)."""


def _to_gymnax_space(space: Any) -> Any:
    """jaxmarl ``Discrete``/``Box`` -> the gymnax space (float32 Box); other spaces unchanged."""
    if isinstance(space, marl_spaces.Discrete):
        return spaces.Discrete(int(space.n))
    if isinstance(space, marl_spaces.Box):
        shape = tuple(int(d) for d in np.atleast_1d(space.shape))
        return spaces.Box(space.low, space.high, shape, jnp.float32)
    return space


class MultiAgentAdapter:
    """A jaxmarl env with float32/bool dicts, gymnax spaces and a params argument (see module docstring)."""

    def __init__(self, env: Any, name: str):
        self._env = env
        self._name = name
        self.agents: list[str] = list(env.agents)
        self.num_agents = len(self.agents)

    @property
    def name(self) -> str:
        return PREFIX + self._name

    @property
    def unwrapped(self) -> Any:
        """The jaxmarl env."""
        return self._env

    @property
    def default_params(self) -> MultiAgentParams:
        return MultiAgentParams()

    def reset(self, key: jax.Array, params: MultiAgentParams | None = None) -> tuple[dict, Any]:
        obs, state = self._env.reset(key)
        return _as(obs, jnp.float32), state

    def step(
        self, key: jax.Array, state: Any, actions: dict, params: MultiAgentParams | None = None
    ) -> tuple[dict, Any, dict, dict, dict]:
        obs, state, rewards, dones, info = self._env.step(key, state, actions)
        return _as(obs, jnp.float32), state, _as(rewards, jnp.float32), _as(dones, jnp.bool_), info

    @cached_property
    def _obs_spec(self) -> dict:
        """Shapes of the observation dict, from tracing ``reset``."""
        return jax.eval_shape(self._env.reset, jax.random.key(0))[0]

    def observation_space(self, params: MultiAgentParams | None, agent: str) -> spaces.Box:
        """Box of ``obs[agent]`` (any observation key), float32, shaped as the env really returns it."""
        if agent not in self._obs_spec:
            raise KeyError(f"unknown observation key {agent!r}; accepted: {sorted(self._obs_spec)}")
        shape = tuple(self._obs_spec[agent].shape)
        declared = self._env.observation_space(agent) if agent in self.agents else None
        return spaces.Box(*_bounds(declared, shape), shape, jnp.float32)

    def action_space(self, params: MultiAgentParams | None, agent: str) -> Any:
        if agent not in self.agents:
            raise KeyError(f"unknown agent {agent!r}; accepted: {self.agents}")
        return _to_gymnax_space(self._env.action_space(agent))

    @cached_property
    def _mask_method(self) -> str | None:
        """The env's own mask method: ``get_avail_actions`` (SMAX, ...), ``get_legal_moves`` (Hanabi) or None."""
        for method in ("get_avail_actions", "get_legal_moves"):
            if not hasattr(self._env, method):
                continue
            try:
                jax.eval_shape(lambda key, m=method: getattr(self._env, m)(self._env.reset(key)[1]), jax.random.key(0))
            except NotImplementedError:
                continue
            return method
        return None

    @property
    def has_avail_actions(self) -> bool:
        """Whether the env itself provides available-action masks."""
        return self._mask_method is not None

    def avail_actions(self, state: Any) -> dict[str, jax.Array]:
        """Per-agent bool masks `[n]` of the actions available in ``state`` (all true where the env
        provides none); ValueError if some agent does not act in a ``Discrete`` space."""
        action_spaces = {agent: self.action_space(None, agent) for agent in self.agents}
        continuous = [agent for agent, space in action_spaces.items() if not isinstance(space, spaces.Discrete)]
        if continuous:
            raise ValueError(f"{self.name}: action masks need Discrete action spaces; {continuous} act in Box spaces")
        if self.has_avail_actions:
            masks = getattr(self._env, self._mask_method)(state)
            return {agent: jnp.asarray(masks[agent], bool) for agent in self.agents}
        return {agent: jnp.ones((space.n,), bool) for agent, space in action_spaces.items()}


def _bounds(declared: Any, shape: tuple[int, ...]) -> tuple[Any, Any]:
    """jaxmarl's declared Box bounds where they fit the real observation ``shape``, else unbounded."""
    if isinstance(declared, marl_spaces.Box) and {np.shape(declared.low), np.shape(declared.high)} <= {(), shape}:
        return declared.low, declared.high
    return -np.inf, np.inf


def _as(tree: Any, dtype: Any) -> Any:
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


def _named(kind: str, value: Any, table: Mapping[str, Any]) -> Any:
    """``table[value]`` for a name (as YAML configs give them), else ``value`` itself; ValueError on unknown names."""
    if not isinstance(value, str):
        return value
    if value not in table:
        raise ValueError(f"unknown {kind} {value!r}; accepted: {sorted(table)}")
    return table[value]


def _ctor_args(env: Any) -> list[str]:
    """Constructor kwargs of a jaxmarl env; the SMAX-wrapping envs also pass SMAX's own on."""
    names = constructor_args(type(env))
    if isinstance(env, EnemySMAX):
        names += [n for n in constructor_args(SMAX) if n not in names]
    return names


def make_jaxmarl(name: str, /, **kwargs: Any) -> tuple[MultiAgentAdapter, MultiAgentParams]:
    """``jaxmarl.make(name, **kwargs)`` as a :class:`MultiAgentAdapter` (kwargs: constructor args).

    Names stand for jaxmarl's objects: ``scenario="3m"`` (SMAX maps, ``smax.MAP_NAME_TO_SCENARIO``) and
    ``layout="cramped_room"`` (``overcooked_layouts``).
    """
    env = jaxmarl.make(name)
    if kwargs:
        ctor_kwargs, _ = split_kwargs(PREFIX + name, kwargs, _ctor_args(env), MultiAgentParams())
        if "scenario" in ctor_kwargs:
            ctor_kwargs["scenario"] = _named("SMAX scenario", ctor_kwargs["scenario"], MAP_NAME_TO_SCENARIO)
        if "layout" in ctor_kwargs:
            ctor_kwargs["layout"] = _named("overcooked layout", ctor_kwargs["layout"], overcooked_layouts)
        env = jaxmarl.make(name, **ctor_kwargs)
    return MultiAgentAdapter(env, name), MultiAgentParams()

"""Multi-agent envs as batches of agents, for trainers that share one policy across agents (IPPO, MAPPO).

:class:`AgentBatch` turns a :class:`ssmrl.envs.jaxmarl_adapter.MultiAgentAdapter` (per-agent dicts) into the
single-agent API of :mod:`ssmrl.envs.wrappers` with a leading agent axis `[A]`: ``reset(key, params) -> (obs,
state)``, ``step(key, state, action [A], params) -> (obs, state, reward [A], terminated [A], truncated [A],
info)``. ``obs`` is a dict:

* ``"obs"`` `[A, D]`: the agent's observation (flattened, zero-padded to the largest agent's size), then its
  one-hot id `[A]` (``agent_ids``), then its previous action one-hot `[n]` and reward `[1]`
  (``prev_action_reward``; zeros at the start of an episode);
* ``"avail"`` `[A, n]` bool: the actions the agent may take (the env's masks where it has them; actions
  beyond an agent's own ``n`` are never available);
* ``"world_state"`` `[A, W]` (``world_state=True``): the centralised critic's input, the env's
  ``obs["world_state"]`` where it has one (SMAX), else every agent's padded observation concatenated,
  followed by the agent's one-hot id (as jaxmarl's MAPPO baselines build it).

An episode ends for every agent at once (``dones["__all__"]``; jaxmarl auto-resets): ``terminated`` is that
flag for each agent, ``truncated`` is false (jaxmarl does not tell time limits apart). ``info`` has the
:class:`ssmrl.envs.wrappers.LogWrapper` entries per agent and, for envs in ``WIN_ENVS`` (SMAX),
``returned_won_episode``: 1.0 when the last reward of the episode is >= 1 (SMAX's won-battle bonus; the
rule of jaxmarl's SMAX logging).

:class:`FlattenAgents` goes outside :class:`ssmrl.envs.wrappers.VecEnv` and merges envs and agents into one batch
axis `[N * A]`, so a single-agent trainer sees ``N * A`` parallel sequences.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from ssmrl.envs.jaxmarl_adapter import MultiAgentAdapter
from ssmrl.envs.wrappers import LogState, Wrapper

WIN_ENVS = ("SMAX", "HeuristicEnemySMAX")
"""jaxmarl envs whose episodes are won or lost (win rate logged)."""


@chex.dataclass(frozen=True)
class AgentBatchState:
    """log: per-agent episode counters `[A]` around the env state; prev_action (-1 at an episode's start: its
    one-hot is zero), prev_reward `[A]`;
    returned_won `[A]`: whether the last finished episode was won."""

    log: LogState
    prev_action: jax.Array
    prev_reward: jax.Array
    returned_won: jax.Array


class AgentBatch:
    """A multi-agent env with array observations, actions and rewards over agents (see the module docstring)."""

    def __init__(self, env: MultiAgentAdapter, agent_ids: bool = True, prev_action_reward: bool = False,
                 world_state: bool = False):
        self._env = env
        self.agents = list(env.agents)
        self.num_agents = len(self.agents)
        self.agent_ids = agent_ids
        self.prev_action_reward = prev_action_reward
        self.world_state = world_state
        params = env.default_params
        action_spaces = [env.action_space(params, agent) for agent in self.agents]
        boxes = [agent for agent, space in zip(self.agents, action_spaces, strict=True)
                 if not isinstance(space, spaces.Discrete)]
        if boxes:
            raise ValueError(f"{env.name}: agents {boxes} act in continuous spaces; shared-policy multi-agent "
                             "training supports Discrete actions only")
        self.num_actions = max(int(space.n) for space in action_spaces)
        self._obs_sizes = [int(np.prod(env.observation_space(params, agent).shape)) for agent in self.agents]
        self._obs_size = max(self._obs_sizes)
        self._env_world_state = "world_state" in env._obs_spec
        self.reports_wins = env.name.removeprefix("jaxmarl/") in WIN_ENVS

    @property
    def name(self) -> str:
        return self._env.name

    @property
    def default_params(self) -> Any:
        return self._env.default_params

    @property
    def unwrapped(self) -> Any:
        return self._env.unwrapped

    def action_space(self, params: Any = None) -> spaces.Discrete:
        """One agent's actions (the largest agent's count)."""
        return spaces.Discrete(self.num_actions)

    def _observe(self, obs: dict, env_state: Any, prev_action: jax.Array, prev_reward: jax.Array) -> dict:
        padded = jnp.stack([
            jnp.pad(obs[agent].reshape(-1), (0, self._obs_size - size))
            for agent, size in zip(self.agents, self._obs_sizes, strict=True)
        ])
        ids = jnp.eye(self.num_agents, dtype=jnp.float32)
        parts = [padded]
        if self.agent_ids:
            parts.append(ids)
        if self.prev_action_reward:
            parts += [jax.nn.one_hot(prev_action, self.num_actions), prev_reward[:, None]]
        masks = self._env.avail_actions(env_state)
        avail = jnp.stack([jnp.pad(masks[agent], (0, self.num_actions - masks[agent].shape[0]))
                           for agent in self.agents])
        out = {"obs": jnp.concatenate(parts, axis=-1), "avail": avail}
        if self.world_state:
            shared = obs["world_state"].reshape(-1) if self._env_world_state else padded.reshape(-1)
            out["world_state"] = jnp.concatenate([jnp.broadcast_to(shared, (self.num_agents, shared.size)), ids], -1)
        return out

    def reset(self, key: jax.Array, params: Any = None) -> tuple[dict, AgentBatchState]:
        obs, env_state = self._env.reset(key, params)
        no_action = jnp.full((self.num_agents,), -1, jnp.int32)
        zeros = jnp.zeros((self.num_agents,), jnp.float32)
        state = AgentBatchState(
            log=LogState.start(env_state, (self.num_agents,)), prev_action=no_action, prev_reward=zeros,
            returned_won=zeros,
        )
        return self._observe(obs, env_state, no_action, zeros), state

    def step(self, key: jax.Array, state: AgentBatchState, action: jax.Array, params: Any = None) -> tuple:
        actions = {agent: action[i] for i, agent in enumerate(self.agents)}
        obs, env_state, rewards, dones, info = self._env.step(key, state.log.env_state, actions, params)
        reward = jnp.stack([rewards[agent] for agent in self.agents])
        done = jnp.broadcast_to(dones["__all__"], (self.num_agents,))
        log = state.log.record(env_state, reward, done)
        returned_won = jnp.where(done, (reward >= 1.0).astype(jnp.float32), state.returned_won)
        prev_action = jnp.where(done, -1, action)
        prev_reward = jnp.where(done, 0.0, reward)
        state = AgentBatchState(log=log, prev_action=prev_action, prev_reward=prev_reward, returned_won=returned_won)
        out_info = log.info(done)
        if self.reports_wins:
            out_info["returned_won_episode"] = returned_won
        return (self._observe(obs, env_state, prev_action, prev_reward), state, reward, done,
                jnp.zeros_like(done), out_info)


class FlattenAgents(Wrapper):
    """`[N, A, ...]` -> `[N * A, ...]` around a ``VecEnv(AgentBatch(...))``; actions `[N * A]` -> `[N, A]`."""

    @property
    def num_envs(self) -> int:
        """Parallel sequences: envs times agents."""
        return self._env.num_envs * self._env.num_agents

    def _merge(self, tree: Any) -> Any:
        return jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), tree)

    def reset(self, key: jax.Array, params: Any = None) -> tuple[dict, Any]:
        obs, state = self._env.reset(key, params)
        return self._merge(obs), state

    def step(self, key: jax.Array, state: Any, action: jax.Array, params: Any = None) -> tuple:
        action = action.reshape((self._env.num_envs, self._env.num_agents, *action.shape[1:]))
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, params)
        return (self._merge(obs), state, *self._merge((reward, terminated, truncated, info)))

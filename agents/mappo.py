"""Multi-agent PPO with parameter sharing on jaxmarl envs: IPPO (de Witt et al. 2020) and MAPPO (Yu et al. 2022).

All agents share one policy network with any registered core. Each agent is one sequence of the PPO batch
(`ssmrl.envs.multi_agent`: N envs x A agents -> N * A sequences) and sees its own observation, its one-hot agent
id and (`env.prev_action_reward`) its previous action and reward; actions are masked to the env's available
actions (SMAX, Hanabi). The critic:

- `critic: local` (IPPO): shares the actor's core and sees what the actor sees;
- `critic: centralised` (MAPPO): a separate network with its own core (same kind and size) over the world
  state (SMAX's own, else all agents' observations concatenated) and the agent id.

Everything else is `ssmrl.agents.ppo` run on that env and network: rollouts in step mode, training on whole
sequences from the rollout-start carry, GAE, clipped policy and value losses, entropy bonus, annealing. The
GAE advantages are normalised per minibatch over all agents. Each agent learns from its own reward (MPE and
SMAX give cooperative agents the team's reward). Logged: episode return and length averaged over agents and
episodes, and the win rate on SMAX.

    state, metrics = jax.jit(make_train(MAPPOConfig()))(jax.random.PRNGKey(0))
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import ssmrl.envs as envs
from ssmrl.agents.env_stack import EnvConfig
from ssmrl.agents.ppo import PPOConfig, make_ppo
from ssmrl.envs.jaxmarl_adapter import MultiAgentAdapter
from ssmrl.envs.multi_agent import AgentBatch, FlattenAgents
from ssmrl.envs.wrappers import VecEnv
from ssmrl.rl.heads import make_head
from ssmrl.rl.networks import ActorCritic, make_memory

CRITICS = ("centralised", "local")


@dataclasses.dataclass(frozen=True)
class MAPPOConfig(PPOConfig):
    """PPOConfig for a jaxmarl env (`env.name: jaxmarl/...`); `critic` picks MAPPO or IPPO."""

    env: EnvConfig = dataclasses.field(default_factory=lambda: EnvConfig(name="jaxmarl/MPE_simple_spread_v3"))
    critic: Literal["centralised", "local"] = "centralised"
    agent_ids: bool = True

    def make_env(self, num_envs: int | None = None, split: Literal["train", "test"] = "train",
                 normalize: bool | None = None):
        """(`FlattenAgents(VecEnv(AgentBatch(env)))`, params): `num_envs` envs, `num_envs * A` sequences."""
        unsupported = [name for name, value in (("env.meta", self.env.meta), ("env.normalize_obs", normalize
                       if normalize is not None else self.env.normalize_obs)) if value]
        if unsupported:
            raise ValueError(f"multi-agent PPO does not support {unsupported}; set them to null/false")
        if self.critic not in CRITICS:
            raise ValueError(f"unknown critic {self.critic!r}; accepted: {list(CRITICS)}")
        base, params = envs.make(self.env.name, **self.env.kwargs)
        if not isinstance(base, MultiAgentAdapter):
            raise ValueError(f"multi-agent PPO needs a jaxmarl env ('jaxmarl/<name>'), got {self.env.name!r}")
        agents = AgentBatch(base, agent_ids=self.agent_ids, prev_action_reward=self.env.prev_action_reward,
                            world_state=self.critic == "centralised")
        return FlattenAgents(VecEnv(agents, num_envs or self.env.num_envs)), params

    def make_network(self, env, env_params) -> ActorCritic:
        """The shared actor (masked categorical head) and, for MAPPO, the centralised critic's own core."""
        critic_core = make_memory(self.core, **self.core_kwargs) if self.critic == "centralised" else None
        return ActorCritic(make_memory(self.core, **self.core_kwargs), make_head(env.action_space(env_params)),
                           self.hidden, self.activation, critic_core)


@dataclasses.dataclass(frozen=True)
class IPPOConfig(MAPPOConfig):
    """MAPPOConfig with the local critic by default (`algo: ippo`)."""

    critic: Literal["centralised", "local"] = "local"


def make_train(config: MAPPOConfig):
    """`train(key) -> (PPOState, metrics [num_updates])`: jittable and vmappable over seeds (the runner uses
    `ssmrl.agents.ppo.make_ppo(config)`, which this config steers to the multi-agent env and network)."""
    return make_ppo(config).train

"""The recurrent actor-critic and the memoryless MLP baseline behind the core interface.

`ActorCritic(core, head)`: inputs `[T, B, D]` (observation, previous action and previous reward, as
`ssmrl.envs.wrappers.PrevActionReward` builds them) -> Dense(hidden) -> core (any registry core, or `MLPCore`) ->
separate actor and critic MLPs -> (action distribution `[T, B]`, value `[T, B]`). Multi-agent observations
(dicts with action masks and a world state) and MAPPO's centralised critic are options of the same module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import numpy as np

from ssmrl.ssm.core import RecurrentCore, check_carry, check_sequence
from ssmrl.ssm.initializers import orthogonal
from ssmrl.ssm.precision import float32_bias
from ssmrl.ssm.registry import CORES, build_named

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "leaky_relu": nn.leaky_relu, "gelu": nn.gelu, "silu": nn.silu}


def dense(features: int, scale: float = float(np.sqrt(2)), name: str | None = None, dtype: Any = None) -> nn.Dense:
    """A Dense layer with orthogonal(scale) kernel and zero bias, PPO's usual initialisation; `dtype` its compute
    dtype (None: flax's, from the inputs and parameters; the bias is added in float32, see `ssmrl.ssm.precision`)."""
    return nn.Dense(features, kernel_init=orthogonal(scale), name=name, dtype=dtype, promote_dtype=float32_bias)


def activation_fn(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


class MLPCore(RecurrentCore):
    """No memory: x `[T, *batch, D]` -> y `[T, *batch, features]` by `n_layers` Dense layers; the carry is `()`."""

    features: int = 64
    n_layers: int = 1
    activation: str = "tanh"

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]):
        return ()

    @nn.compact
    def __call__(self, carry, x, resets=None):
        check_sequence(x, resets, type(self).__name__)
        check_carry(self, carry, x, type(self).__name__)
        act = activation_fn(self.activation)
        for _ in range(self.n_layers):
            x = act(dense(self.features)(x))
        return carry, x


def make_memory(name: str, **cfg) -> RecurrentCore:
    """A registry core by name (see `ssmrl.ssm.CORES`), or `"mlp"` for the memoryless baseline."""
    return build_named({**CORES, "mlp": MLPCore}, "core", name, cfg)


class ActorCritic(nn.Module):
    """(carry, obs, resets `[T, B]`) -> (carry, action distribution `[T, B]`, value `[T, B]`).

    obs is `[T, B, D]`, or a dict (multi-agent envs, `ssmrl.envs.multi_agent.AgentBatch`) with "obs" `[T, B, D]`,
    optionally "avail" `[T, B, n]` (action mask) and "world_state" `[T, B, W]`. With a `critic_core` the
    critic is a separate network over "world_state" (MAPPO's centralised critic) and the carry is
    (actor carry, critic carry); without one, actor and critic share the core.
    """

    core: RecurrentCore
    head: nn.Module
    hidden: int = 256
    activation: str = "tanh"
    critic_core: RecurrentCore | None = None

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]):
        if self.critic_core is None:
            return self.core.initialize_carry(batch_shape)
        return self.core.initialize_carry(batch_shape), self.critic_core.initialize_carry(batch_shape)

    @nn.compact
    def __call__(self, carry, obs, resets):
        act = activation_fn(self.activation)
        inputs = obs if isinstance(obs, dict) else {"obs": obs}
        actor_carry = carry if self.critic_core is None else carry[0]
        actor_carry, y = self.core(actor_carry, act(dense(self.hidden, name="embed")(inputs["obs"])), resets)
        actor = act(dense(self.hidden, name="actor_hidden")(y))
        dist = self.head(actor, inputs["avail"]) if "avail" in inputs else self.head(actor)
        if self.critic_core is None:
            carry, critic_in = actor_carry, y
        else:
            critic_carry, critic_in = self.critic_core(
                carry[1], act(dense(self.hidden, name="critic_embed")(inputs["world_state"])), resets
            )
            carry = (actor_carry, critic_carry)
        critic = act(dense(self.hidden, name="critic_hidden")(critic_in))
        value = dense(1, scale=1.0, name="value")(critic)[..., 0]
        return carry, dist, value

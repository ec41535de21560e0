"""The recurrent actor-critic and the memoryless MLP baseline behind the core interface.

`ActorCritic(core, head)`: inputs `[T, B, D]` (observation, previous action and previous reward, as
`envs.wrappers.PrevActionReward` builds them) -> Dense(hidden) -> core (any registry core, or `MLPCore`) ->
separate actor and critic MLPs -> (action distribution `[T, B]`, value `[T, B]`).
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import numpy as np

from ssm.core import RecurrentCore, check_sequence
from ssm.initializers import orthogonal
from ssm.registry import CORES, build_named

ACTIVATIONS = {"relu": nn.relu, "tanh": nn.tanh, "leaky_relu": nn.leaky_relu, "gelu": nn.gelu, "silu": nn.silu}


def dense(features: int, scale: float = float(np.sqrt(2)), name: str | None = None) -> nn.Dense:
    """A Dense layer with orthogonal(scale) kernel and zero bias, PPO's usual initialisation."""
    return nn.Dense(features, kernel_init=orthogonal(scale), name=name)


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
        act = activation_fn(self.activation)
        for _ in range(self.n_layers):
            x = act(dense(self.features)(x))
        return carry, x


def make_memory(name: str, **cfg) -> RecurrentCore:
    """A registry core by name (see `ssm.CORES`), or `"mlp"` for the memoryless baseline."""
    return build_named({**CORES, "mlp": MLPCore}, "core", name, cfg)


class ActorCritic(nn.Module):
    """(carry, obs `[T, B, D]`, resets `[T, B]`) -> (carry, action distribution `[T, B]`, value `[T, B]`)."""

    core: RecurrentCore
    head: nn.Module
    hidden: int = 256
    activation: str = "tanh"

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]):
        return self.core.initialize_carry(batch_shape)

    @nn.compact
    def __call__(self, carry, obs, resets):
        act = activation_fn(self.activation)
        x = act(dense(self.hidden, name="embed")(obs))
        carry, y = self.core(carry, x, resets)
        actor = act(dense(self.hidden, name="actor_hidden")(y))
        critic = act(dense(self.hidden, name="critic_hidden")(y))
        value = dense(1, scale=1.0, name="value")(critic)[..., 0]
        return carry, self.head(actor), value

"""Action heads: network output -> a distrax distribution over the stored action, and the env's action.

PPO stores the action it samples, evaluates `log_prob` of it under old and new parameters and uses the
distribution's `entropy`. `ActionHead.env_action` maps a stored action to what the env receives.

- `CategoricalHead` (Discrete(n)): logits `[..., n]`, optionally masked to the available actions.
- `GaussianHead` (Box): mean `[..., A]` and a state-independent learned log-std. Unsquashed, the env gets
  the sample clipped to the action bounds. Squashed (tanh-Gaussian), the stored action is the pre-squash
  sample u and the env gets `low + (tanh(u) + 1) (high - low) / 2`. The tanh Jacobian term depends only
  on u, so it cancels in PPO's ratio and the Gaussian over u gives exact ratios; the entropy bonus uses
  the Gaussian's entropy (the squashed distribution has none in closed form), a standard simplification.
"""

from __future__ import annotations

from typing import Any

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from ssmrl.envs.wrappers import box_bounds
from ssmrl.ssm.initializers import orthogonal
from ssmrl.ssm.precision import float32_bias

MASKED_LOGIT = -1e9
"""The logit of an unavailable action: probability exactly 0 in float32, and no inf/NaN in entropies."""


class CategoricalHead(nn.Module):
    """Discrete(n) actions: features `[..., F]` -> Categorical over n; `mask` `[..., n]` bool rules actions out.
    `dtype`: the Dense's compute dtype (None: flax's, from the inputs and parameters; its bias is added in float32,
    see `ssmrl.ssm.precision`); the logits are float32."""

    num_actions: int
    dtype: Any = None

    @nn.compact
    def __call__(self, features, mask=None) -> distrax.Distribution:
        logits = nn.Dense(self.num_actions, kernel_init=orthogonal(0.01), dtype=self.dtype, promote_dtype=float32_bias,
                          name="logits")(features)
        logits = logits.astype(jnp.float32)
        if mask is not None:
            logits = jnp.where(mask, logits, MASKED_LOGIT)
        return distrax.Categorical(logits=logits)

    @nn.nowrap
    def env_action(self, action):
        return action

    @nn.nowrap
    def greedy(self, dist: distrax.Distribution):
        return dist.mode()


class GaussianHead(nn.Module):
    """Box((A,)) actions: features `[..., F]` -> diagonal Gaussian with a learned, state-independent log-std."""

    action_dim: int
    low: Any
    high: Any
    squash: bool = False
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, features) -> distrax.Distribution:
        mean = nn.Dense(self.action_dim, kernel_init=orthogonal(0.01), name="mean")(features)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std), (self.action_dim,))
        return distrax.MultivariateNormalDiag(mean, jnp.broadcast_to(jnp.exp(log_std), mean.shape))

    @nn.nowrap
    def env_action(self, action):
        low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        if self.squash:
            return low + (jnp.tanh(action) + 1.0) * 0.5 * (high - low)
        return jnp.clip(action, low, high)

    @nn.nowrap
    def greedy(self, dist: distrax.Distribution):
        return dist.mean()


def make_head(action_space, continuous: str = "tanh_gaussian") -> nn.Module:
    """The head for a gymnax action space; `continuous` picks "tanh_gaussian" or "gaussian" for Box spaces."""
    if isinstance(action_space, spaces.Discrete):
        return CategoricalHead(int(action_space.n))
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        if continuous not in ("tanh_gaussian", "gaussian"):
            raise ValueError(f"continuous head must be 'tanh_gaussian' or 'gaussian', got {continuous!r}")
        low, high = jax.device_get(box_bounds(action_space))
        if continuous == "tanh_gaussian" and not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError("a tanh-Gaussian head needs finite action bounds; use continuous='gaussian'")
        return GaussianHead(int(action_space.shape[0]), tuple(low.tolist()), tuple(high.tolist()),
                            squash=continuous == "tanh_gaussian")
    raise ValueError(f"PPO supports Discrete and 1-D Box action spaces, got {action_space!r}")

"""Generalised advantage estimation over a rollout."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(rewards, values, dones, last_value, gamma: float, lam: float):
    """GAE(gamma, lambda) (Schulman et al. 2016).

    rewards, values, dones `[T, *B]` (dones[t]: the episode ended at step t, so V(s_{t+1}) is not used),
    last_value `[*B]` = V(s_T). Returns (advantages, value targets = advantages + values), both `[T, *B]`.
    """
    not_done = 1.0 - dones.astype(values.dtype)
    next_values = jnp.concatenate([values[1:], last_value[None]], axis=0)
    deltas = rewards + gamma * next_values * not_done - values

    def backward(advantage, inputs):
        delta, nd = inputs
        advantage = delta + gamma * lam * nd * advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(backward, jnp.zeros_like(last_value), (deltas, not_done), reverse=True)
    return advantages, advantages + values

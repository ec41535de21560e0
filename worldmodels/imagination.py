"""Imagined rollouts of the Drama world model: a context of real steps, then the policy acting in the model.

Model state s = [z, h_prev]: the latent of the current step and the sequence-model output of the step before
(zeros at an episode start). A context o_1..o_C, a_1..a_C (sequence mode) gives h_C; imagination starts at
s_0 = [z^_{C+1} ~ p(z | h_C), h_C] and repeats: a_i ~ pi(s_i); h = f(carry, [z_i, a_i]) (step mode); r_i, c_i from h;
z_{i+1} ~ p(z | h); s_{i+1} = [z_{i+1}, h]. Predicted termination is hard (logit > 0: c_i = 0), as in the official
code. The reward of step i is the one of (s_i, a_i) (the official Mamba path reads it one step early).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ssmrl.worldmodels.drama import DramaWorldModel
from ssmrl.worldmodels.twohot import twohot_mean


def observe_context(model: DramaWorldModel, variables, obs, actions, firsts, key):
    """Sequence mode over a context (obs `[C, B, *obs_shape]`, actions, firsts `[C, B]`) from a zero carry, with the
    world model's flax `variables`. Returns (carry, z `[C, B, Z]` posterior samples, h `[C, B, D]`)."""
    carry = model.initial_carry(actions.shape[1:])
    z = model.apply(variables, obs, key, method=DramaWorldModel.sample_posterior)
    carry, h = model.apply(variables, carry, z, actions, firsts, method=DramaWorldModel.sequence)
    return carry, z, h


def start_state(model: DramaWorldModel, variables, context: dict, key):
    """(carry, z_0 `[B, Z]`, h_C `[B, D]`): imagination's start after a context dict (obs, action, first)."""
    k_obs, k_prior = jax.random.split(key)
    carry, _, h = observe_context(model, variables, context["obs"], context["action"], context["first"], k_obs)
    z0 = model.apply(variables, h[-1], k_prior, method=DramaWorldModel.sample_prior)
    return carry, z0, h[-1]


def imagine(model: DramaWorldModel, variables, policy: Callable | None, carry, z0, h0, horizon: int, key, actions=None):
    """Roll `horizon` steps from (carry, z_0, h_0) with `policy(feat [B, F], key) -> action [B]`, or open loop
    with given `actions` int `[H, B]` (policy None).

    Returns feat `[H + 1, B, F]` (s_0..s_H, stop-gradient), action, reward (two-hot mean), cont (1 - predicted
    termination) `[H, B]`, and z `[H + 1, B, Z]` (for decoding imagined frames).
    """
    if (policy is None) == (actions is None):
        raise ValueError("imagine: give exactly one of policy and actions")
    bins = model.bins()

    def step(state, inputs):
        carry, z, h = state
        k, given = inputs
        k_act, k_z = jax.random.split(k)
        feat = jnp.concatenate([z, h], -1)
        action = given if policy is None else policy(feat, k_act)
        carry, out = model.apply(variables, carry, z, action, k_z, method=DramaWorldModel.imagine_step)
        return (carry, out["z"], out["h"]), dict(feat=feat, z=z, action=action, h=out["h"])

    (_, z_last, h_last), traj = jax.lax.scan(step, (carry, z0, h0), (jax.random.split(key, horizon), actions))
    reward, terminal = model.apply(variables, traj.pop("h"), method=DramaWorldModel.heads)  # all H steps at once
    traj.update(reward=twohot_mean(reward, bins), cont=(terminal <= 0).astype(jnp.float32))
    last = dict(feat=jnp.concatenate([z_last, h_last], -1), z=z_last)
    traj = {**traj, **{k: jnp.concatenate([traj[k], v[None]]) for k, v in last.items()}}
    return jax.lax.stop_gradient(traj)

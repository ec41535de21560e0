"""One jitted rollout of a POPGym-style game: many vmapped auto-resetting envs under a reference or a random policy.

Policies are ``(init(env) -> memory, act(env, state, obs, memory, new_episode) -> (action, memory))``.
"""

import functools

import jax
import jax.numpy as jnp


def rollout(env, policy, key, use_reference, num_envs, num_steps, record=lambda state: ()):
    """Run `num_steps` steps of `num_envs` auto-resetting envs under the reference or a random policy.

    Returns the reset obs `[B, D]`, per-step rewards/terminated/truncated/time-after-step `[T, B]`,
    the last obs `[B, D]`, whether every obs was in [0, 1], the return and length of each env's
    first episode `[B]`, and `record(state)` of every state after a step (`[T, B, ...]`, auto-reset applied).
    """
    init, act = policy
    params = env.default_params
    key_reset, key_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(key_reset, num_envs), params)
    memory = jax.vmap(lambda _: init(env))(jnp.arange(num_envs))

    def body(carry, key):
        obs, state, memory, new, ret, length, first_ret, first_len, in_range = carry
        key_act, key_step = jax.random.split(key)
        reference, memory = jax.vmap(functools.partial(act, env))(state, obs, memory, new)
        random_action = jax.random.randint(key_act, (num_envs,), 0, env.num_actions)
        action = jnp.where(use_reference, reference, random_action).astype(jnp.int32)
        obs, state, reward, terminated, truncated, _ = jax.vmap(env.step, (0, 0, 0, None))(
            jax.random.split(key_step, num_envs), state, action, params
        )
        new = terminated | truncated
        ret, length = ret + reward, length + 1
        first = new & (first_len == 0)
        first_ret, first_len = jnp.where(first, ret, first_ret), jnp.where(first, length, first_len)
        ret, length = jnp.where(new, 0.0, ret), jnp.where(new, 0, length)
        in_range = in_range & (obs >= 0).all() & (obs <= 1).all()
        carry = (obs, state, memory, new, ret, length, first_ret, first_len, in_range)
        return carry, (reward, terminated, truncated, state.time, jax.vmap(record)(state))

    zeros, ones = jnp.zeros(num_envs), jnp.ones(num_envs, bool)
    int_zeros = zeros.astype(jnp.int32)
    carry = (obs, state, memory, ones, zeros, int_zeros, zeros, int_zeros, jnp.bool_(True))
    keys = jax.random.split(key_run, num_steps)
    carry, (rewards, terminated, truncated, times, records) = jax.lax.scan(body, carry, keys)
    last_obs, *_, first_ret, first_len, in_range = carry
    return {
        "reset_obs": obs,
        "rewards": rewards,
        "terminated": terminated,
        "truncated": truncated,
        "times": times,
        "last_obs": last_obs,
        "in_range": in_range,
        "first_return": first_ret,
        "first_length": first_len,
        "records": records,
    }

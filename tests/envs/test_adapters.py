"""Adapter-specific behaviour of the gymnax, brax and jaxmarl families (the shared env contract is in
test_registry.py)."""

import brax.envs
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ssmrl.envs as envs
from ssmrl.envs.brax_adapter import BraxAdapter, BraxParams
from ssmrl.envs.jaxmarl_adapter import MultiAgentAdapter, MultiAgentParams


def test_gymnax_discrete_observation_becomes_one_hot():
    env, params = envs.make("FrozenLake-misc")
    raw = env.unwrapped
    assert env.observation_space(params).shape == (16,) and env.name == raw.name
    key = jax.random.key(0)
    obs, state = env.reset(key, params)
    raw_obs, _ = raw.reset(key, params)
    np.testing.assert_array_equal(obs, jax.nn.one_hot(raw_obs, 16))
    obs, _, reward, _, _, info = env.step(key, state, 2, params)
    raw_obs, _, raw_reward, _, _, raw_info = raw.step(key, state, 2, params)
    np.testing.assert_array_equal(obs, jax.nn.one_hot(raw_obs, 16))
    np.testing.assert_array_equal(info["final_observation"], jax.nn.one_hot(raw_info["final_observation"], 16))
    assert reward.dtype == jnp.float32 and reward == raw_reward


@pytest.mark.parametrize("name", ["FourRooms-misc", "BernoulliBandit-misc"])
def test_gymnax_observations_and_rewards_become_float32(name):
    env, params = envs.make(name)
    key = jax.random.key(1)
    obs, state = env.reset(key, params)
    out = env.step(key, state, env.action_space(params).sample(key), params)
    raw_out = env.unwrapped.step(key, state, env.action_space(params).sample(key), params)
    assert env.observation_space(params).dtype == jnp.float32
    for value in (obs, out[0], out[5]["final_observation"], out[2]):
        assert value.dtype == jnp.float32
    np.testing.assert_array_equal(out[0], raw_out[0])
    np.testing.assert_array_equal(out[2], raw_out[2])


class _Slider(brax.envs.Env):
    """A physics-free brax env: x += action, done once |x| > 1, reward a python float (as some brax envs)."""

    def reset(self, rng):
        x = jax.random.uniform(rng, (1,), minval=-0.1, maxval=0.1)
        return brax.envs.State(pipeline_state=None, obs=x, reward=jnp.zeros(()), done=jnp.zeros(()), metrics={})

    def step(self, state, action):
        x = state.obs + action
        return state.replace(obs=x, reward=1.0, done=jnp.where(jnp.abs(x[0]) > 1.0, 1.0, 0.0))

    observation_size, action_size, backend = 1, 1, "none"


def test_brax_adapter_terminates_truncates_and_auto_resets():
    env = BraxAdapter(_Slider(), "slider")
    params = BraxParams(max_steps_in_episode=2)

    @jax.jit
    def rollout(key, action):
        _, state = env.reset(key, params)

        def body(state, key):
            obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)
            return state, (obs, state.time, reward, terminated, truncated, info["final_observation"])

        return jax.lax.scan(body, state, jax.random.split(key, 6))[1]

    obs, time, reward, terminated, truncated, final_obs = rollout(jax.random.key(2), jnp.array([0.7]))
    np.testing.assert_array_equal(terminated, [False, True] * 3)  # |x| passes 1 on every 2nd step
    np.testing.assert_array_equal(time, [1, 0] * 3)  # auto-reset restarts the episode clock
    assert reward.dtype == jnp.float32 and np.all(reward == 1.0)
    assert np.all(np.abs(final_obs[1::2]) > 1.0) and np.all(np.abs(obs[1::2]) <= 0.1)  # fresh reset
    _, time, _, terminated, truncated, _ = rollout(jax.random.key(2), jnp.array([0.1]))
    np.testing.assert_array_equal(truncated, [False, True] * 3)  # the time limit, params.max_steps_in_episode
    assert not terminated.any()


def test_brax_adapter_spaces():
    env, params = envs.make("brax/inverted_pendulum", max_steps_in_episode=7)
    assert env.name == "brax/inverted_pendulum" and env.num_actions == 1 and params.max_steps_in_episode == 7
    action_space, obs_space = env.action_space(params), env.observation_space(params)
    assert action_space.shape == (1,) and float(action_space.low) == -1.0 and float(action_space.high) == 1.0
    assert obs_space.shape == (4,) and obs_space.dtype == jnp.float32


def test_jaxmarl_adapter_dicts_spaces_and_masks():
    env, params = envs.make("jaxmarl/MPE_simple_tag_v3")
    assert isinstance(params, MultiAgentParams) and env.num_agents == 4
    obs, state = jax.eval_shape(env.reset, jax.random.key(0), params)
    actions = {agent: jnp.zeros((), jnp.int32) for agent in env.agents}
    _, _, rewards, dones, _ = jax.eval_shape(env.step, jax.random.key(0), state, actions, params)
    assert all(obs[agent].dtype == jnp.float32 for agent in env.agents)
    assert all(r.dtype == jnp.float32 for r in rewards.values())  # jaxmarl returns int32 here
    assert "__all__" in dones and all(d.dtype == jnp.bool_ for d in dones.values())
    assert not env.has_avail_actions
    masks = env.avail_actions(state)
    assert all(m.shape == (5,) and bool(m.all()) for m in masks.values())
    with pytest.raises(KeyError, match="unknown agent"):
        env.action_space(params, "agent_9")
    with pytest.raises(KeyError, match="unknown observation key"):
        env.observation_space(params, "agent_9")


def test_jaxmarl_adapter_env_masks_and_extra_observations():
    env, params = envs.make("jaxmarl/SMAX")
    assert env.has_avail_actions
    obs, state = jax.eval_shape(env.reset, jax.random.key(0), params)
    masks = jax.eval_shape(env.avail_actions, state)
    for agent in env.agents:
        assert masks[agent].shape == (env.action_space(params, agent).n,) and masks[agent].dtype == jnp.bool_
    assert obs["world_state"].shape == env.observation_space(params, "world_state").shape


def test_jaxmarl_continuous_agents_without_masks_raise():
    env, _ = envs.make("jaxmarl/MPE_simple_facmac_v1")
    _, state = jax.eval_shape(env.reset, jax.random.key(0), None)
    with pytest.raises(ValueError, match="action masks need Discrete"):
        env.avail_actions(state)


def test_jaxmarl_integer_observations_are_cast():
    env, params = envs.make("jaxmarl/switch_riddle")
    assert isinstance(env, MultiAgentAdapter)
    obs, _ = env.reset(jax.random.key(3), params)
    raw_obs, _ = env.unwrapped.reset(jax.random.key(3))
    for agent in env.agents:
        assert obs[agent].dtype == jnp.float32 and raw_obs[agent].dtype == jnp.int32
        np.testing.assert_array_equal(obs[agent], raw_obs[agent])
        assert obs[agent].shape == env.observation_space(params, agent).shape

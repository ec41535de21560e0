"""Wrapper properties: episode logging, previous action/reward, vectorisation, time limits, normalisation.

Each wrapper stack is compiled once (module-level rollouts taking the key as their only input).
"""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ssmrl.envs as envs
from ssmrl.envs.wrappers import (
    FlattenObservation,
    LogWrapper,
    NormalizeObservation,
    PrevActionReward,
    TimeLimit,
    VecEnv,
)

NUM_ENVS, NUM_STEPS = 16, 40
SEEDS = st.integers(0, 2**31 - 1)


def _rollout(env, params, num_steps=NUM_STEPS):
    """Jitted ``key -> (obs0, steps)``: ``steps`` holds obs, state, reward, terminated, truncated, info and
    action of each step `[T, ...]` under a uniformly random policy (batched when ``env`` is)."""
    space = env.action_space(params)
    num_envs = getattr(env, "num_envs", None)  # wrappers forward attributes, so any VecEnv inside shows

    def policy(key):
        return space.sample(key) if num_envs is None else jax.vmap(space.sample)(jax.random.split(key, num_envs))

    @jax.jit
    def run(key):
        key_reset, key_steps = jax.random.split(key)
        obs0, state = env.reset(key_reset, params)

        def body(state, key):
            key_act, key_step = jax.random.split(key)
            action = policy(key_act)
            obs, state, reward, terminated, truncated, info = env.step(key_step, state, action, params)
            return state, {
                "obs": obs, "state": state, "reward": reward, "terminated": terminated,
                "truncated": truncated, "info": info, "action": action,
            }

        return obs0, jax.lax.scan(body, state, jax.random.split(key_steps, num_steps))[1]

    return run


def _assert_in_space(obs, space):
    assert obs.shape[obs.ndim - len(space.shape):] == tuple(space.shape) and obs.dtype == space.dtype
    assert np.all((obs >= np.asarray(space.low)) & (obs <= np.asarray(space.high)))


CARTPOLE, CARTPOLE_PARAMS = envs.make("CartPole-v1")
PENDULUM, PENDULUM_PARAMS = envs.make("Pendulum-v1")
# Discrete stack (CartPole episodes end at random times) and the same wrappers outside VecEnv.
INNER = VecEnv(LogWrapper(PrevActionReward(CARTPOLE)), NUM_ENVS)
OUTER = LogWrapper(PrevActionReward(VecEnv(CARTPOLE, NUM_ENVS)))
RUN_INNER, RUN_OUTER = _rollout(INNER, CARTPOLE_PARAMS), _rollout(OUTER, CARTPOLE_PARAMS)
# Continuous stack with a time limit of 4 (Pendulum never terminates; rewards vary).
LIMIT = 4
CONTINUOUS = VecEnv(LogWrapper(PrevActionReward(TimeLimit(PENDULUM, LIMIT))), NUM_ENVS)
RUN_CONTINUOUS = _rollout(CONTINUOUS, PENDULUM_PARAMS, num_steps=3 * LIMIT + 1)


def _check_log(steps):
    """Returned episode returns/lengths equal the sums of rewards/steps since the previous episode end."""
    reward, info = np.asarray(steps["reward"]), steps["info"]
    done = np.asarray(info["returned_episode"])
    np.testing.assert_array_equal(done, steps["terminated"] | steps["truncated"])
    running_return, running_length = np.zeros(reward.shape[1]), np.zeros(reward.shape[1], int)
    last_return, last_length = np.zeros(reward.shape[1]), np.zeros(reward.shape[1], int)
    for t in range(reward.shape[0]):
        running_return, running_length = running_return + reward[t], running_length + 1
        last_return = np.where(done[t], running_return, last_return)
        last_length = np.where(done[t], running_length, last_length)
        np.testing.assert_allclose(info["returned_episode_returns"][t], last_return, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(info["returned_episode_lengths"][t], last_length)
        running_return, running_length = np.where(done[t], 0.0, running_return), np.where(done[t], 0, running_length)


@settings(max_examples=4)
@given(SEEDS)
def test_log_wrapper_returns_are_episode_sums(seed):
    _, steps = RUN_INNER(jax.random.key(seed))
    assert np.asarray(steps["info"]["returned_episode"]).any()
    _check_log(steps)
    _, steps = RUN_CONTINUOUS(jax.random.key(seed))
    _check_log(steps)


@settings(max_examples=3)
@given(SEEDS)
def test_wrappers_give_same_results_inside_and_outside_vecenv(seed):
    inner, outer = RUN_INNER(jax.random.key(seed)), RUN_OUTER(jax.random.key(seed))
    np.testing.assert_array_equal(inner[0], outer[0])
    for key in ("obs", "reward", "terminated", "truncated", "action"):
        np.testing.assert_array_equal(inner[1][key], outer[1][key])
    for key in ("returned_episode_returns", "returned_episode_lengths", "returned_episode", "final_observation"):
        np.testing.assert_array_equal(inner[1]["info"][key], outer[1]["info"][key])


def test_prev_action_reward_discrete():
    obs0, steps = RUN_INNER(jax.random.key(1))
    space = INNER.observation_space(CARTPOLE_PARAMS)
    assert space.shape == (4 + 2 + 1,)
    for obs in (obs0, steps["obs"], steps["info"]["final_observation"]):
        _assert_in_space(obs, space)
    np.testing.assert_array_equal(obs0[:, 4:], 0.0)  # zeros after reset
    done = np.asarray(steps["terminated"] | steps["truncated"])
    shown = np.concatenate([jax.nn.one_hot(steps["action"], 2), steps["reward"][..., None]], -1)
    np.testing.assert_array_equal(steps["obs"][..., 4:], np.where(done[..., None], 0.0, shown))
    np.testing.assert_array_equal(steps["info"]["final_observation"][..., 4:], shown)  # last step's, also at ends


def test_prev_action_reward_continuous_and_time_limit():
    obs0, steps = RUN_CONTINUOUS(jax.random.key(2))
    space = CONTINUOUS.observation_space(PENDULUM_PARAMS)
    assert space.shape == (3 + 1 + 1,)
    _assert_in_space(steps["obs"], space)
    truncated = np.asarray(steps["truncated"])
    expected = (np.arange(truncated.shape[0]) % LIMIT == LIMIT - 1)[:, None].repeat(NUM_ENVS, 1)
    np.testing.assert_array_equal(truncated, expected)  # truncated exactly every LIMIT steps
    assert not np.asarray(steps["terminated"]).any()
    np.testing.assert_array_equal(steps["info"]["returned_episode_lengths"][LIMIT - 1 :], LIMIT)
    shown = np.concatenate([steps["action"], steps["reward"][..., None]], -1)
    np.testing.assert_array_equal(steps["obs"][..., 3:], np.where(truncated[..., None], 0.0, shown))
    np.testing.assert_array_equal(steps["info"]["final_observation"][..., 3:], shown)
    steps_taken = np.asarray(steps["state"].env_state.steps)  # VecEnv > LogWrapper > TimeLimit state
    np.testing.assert_array_equal(steps_taken, np.where(truncated, 0, (np.arange(len(truncated)) % LIMIT + 1)[:, None]))


def test_vecenv_resets_each_env_independently():
    _, steps = RUN_INNER(jax.random.key(3))
    done = np.asarray(steps["terminated"] | steps["truncated"])
    time = np.asarray(steps["state"].env_state.time)  # raw CartPole step counter of every env `[T, N]`
    assert (done.any(1) & ~done.all(1)).any()  # some steps end episodes of some envs only
    previous = np.concatenate([np.zeros((1, NUM_ENVS), int), time[:-1]])
    np.testing.assert_array_equal(time, np.where(done, 0, previous + 1))


def test_time_limit_defers_to_earlier_env_ends():
    env = VecEnv(TimeLimit(CARTPOLE, 1000), NUM_ENVS)
    _, limited = _rollout(env, CARTPOLE_PARAMS)(jax.random.key(4))
    assert np.asarray(limited["terminated"]).any() and not np.asarray(limited["truncated"]).any()
    np.testing.assert_array_equal(limited["state"].steps, limited["state"].env_state.time)


def test_flatten_observation():
    catch, params = envs.make("Catch-bsuite")
    flat = FlattenObservation(catch)
    space = flat.observation_space(params)
    assert space.shape == (50,)
    obs0, steps = _rollout(VecEnv(flat, NUM_ENVS), params, num_steps=12)(jax.random.key(5))
    raw0, raw = _rollout(VecEnv(catch, NUM_ENVS), params, num_steps=12)(jax.random.key(5))
    np.testing.assert_array_equal(obs0, raw0.reshape(NUM_ENVS, -1))
    np.testing.assert_array_equal(steps["obs"], raw["obs"].reshape(12, NUM_ENVS, -1))
    raw_final = raw["info"]["final_observation"]
    np.testing.assert_array_equal(steps["info"]["final_observation"], raw_final.reshape(12, NUM_ENVS, -1))
    _assert_in_space(steps["obs"], space)


def test_normalize_observation_tracks_pooled_moments():
    vec = VecEnv(CARTPOLE, 4)
    normalized = NormalizeObservation(vec)
    obs0, steps = _rollout(normalized, CARTPOLE_PARAMS, num_steps=30)(jax.random.key(6))
    raw0, raw = _rollout(vec, CARTPOLE_PARAMS, num_steps=30)(jax.random.key(6))  # same keys, same episodes
    seen = np.concatenate([raw0[None], raw["obs"]]).reshape(-1, 4)
    state = jax.tree.map(lambda x: x[-1], steps["state"])
    np.testing.assert_allclose(state.mean, seen.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(state.var, seen.var(0), rtol=1e-3, atol=1e-5)
    expected = (raw["obs"][-1] - state.mean) / np.sqrt(state.var + normalized.eps)
    np.testing.assert_allclose(steps["obs"][-1], np.clip(expected, -10, 10), rtol=1e-4, atol=1e-5)
    _assert_in_space(steps["obs"], normalized.observation_space(CARTPOLE_PARAMS))


def test_wrappers_reject_bad_arguments():
    catch, params = envs.make("Catch-bsuite")
    with pytest.raises(ValueError, match="FlattenObservation"):
        PrevActionReward(catch).observation_space(params)
    with pytest.raises(ValueError, match="max_steps"):
        TimeLimit(CARTPOLE, 0)
    with pytest.raises(ValueError, match="num_envs"):
        VecEnv(CARTPOLE, 2.5)
    with pytest.raises(ValueError, match="clip"):
        NormalizeObservation(CARTPOLE, clip=0.0)

"""MetaRL: per-trial projections, trial/episode boundaries, disjoint train/test task splits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ssmrl.envs as envs
from ssmrl.envs.meta import MetaRL
from ssmrl.envs.wrappers import LogWrapper, PrevActionReward, VecEnv

NUM_ENVS, NUM_STEPS, OBS_DIM, EPISODES, MAX_STEPS = 8, 24, 6, 2, 3
TASK_IDS = st.integers(0, 2**20 - 1)

CARTPOLE, CARTPOLE_PARAMS = envs.make("CartPole-v1", max_steps_in_episode=MAX_STEPS)
META = MetaRL(CARTPOLE, CARTPOLE_PARAMS, obs_dim=OBS_DIM, episodes_per_trial=EPISODES)
STACK = VecEnv(LogWrapper(PrevActionReward(META), episode_key="episode_done"), NUM_ENVS)


@jax.jit
def _rollout(key):
    """Random-policy rollout of STACK: ``(state0, steps)`` with per-step `[T, N, ...]` outputs."""
    params = STACK.default_params
    key_reset, key_steps = jax.random.split(key)
    obs0, state0 = STACK.reset(key_reset, params)

    def body(state, key):
        key_act, key_step = jax.random.split(key)
        action = jax.random.randint(key_act, (NUM_ENVS,), 0, 2)
        obs, state, reward, terminated, truncated, info = STACK.step(key_step, state, action, params)
        return state, {"obs": obs, "state": state, "terminated": terminated, "truncated": truncated, "info": info}

    return (obs0, state0), jax.lax.scan(body, state0, jax.random.split(key_steps, NUM_STEPS))[1]


@pytest.fixture(scope="module")
def rollout():
    return _rollout(jax.random.key(0))


def test_done_only_at_trial_end(rollout):
    _, steps = rollout
    episode_done, terminated = np.asarray(steps["info"]["episode_done"]), np.asarray(steps["terminated"])
    assert not np.asarray(steps["truncated"]).any()
    assert terminated.any() and (episode_done & ~terminated).any()
    finished = np.zeros(NUM_ENVS, int)
    for t in range(NUM_STEPS):
        finished += episode_done[t]
        np.testing.assert_array_equal(terminated[t], finished == EPISODES)
        finished = np.where(terminated[t], 0, finished)


def test_projection_fixed_within_trial_and_resampled_between(rollout):
    (_, state0), steps = rollout
    projections = np.concatenate([state0.env_state.obs_projection[None], steps["state"].env_state.obs_projection])
    task_ids = np.concatenate([state0.env_state.task_id[None], steps["state"].env_state.task_id])
    same = np.all(projections[1:] == projections[:-1], axis=(-2, -1))
    terminated = np.asarray(steps["terminated"])
    np.testing.assert_array_equal(same, ~terminated)  # a new trial brings a new projection, else it stays
    np.testing.assert_array_equal(task_ids[1:] == task_ids[:-1], ~terminated)


def test_observation_flags_and_previous_action_reward(rollout):
    (obs0, _), steps = rollout
    obs, info, terminated = np.asarray(steps["obs"]), steps["info"], np.asarray(steps["terminated"])
    assert obs.shape == (NUM_STEPS, NUM_ENVS, OBS_DIM + 1 + 2 + 1)
    episode_start = np.asarray(info["episode_done"]) & ~terminated
    np.testing.assert_array_equal(obs[..., OBS_DIM], episode_start)  # flag: new inner episode in the trial
    np.testing.assert_array_equal(obs0[:, OBS_DIM:], 0.0)
    # previous action/reward: zeros at trial starts only; shown across inner-episode boundaries
    np.testing.assert_array_equal(obs[terminated][:, OBS_DIM + 1 :], 0.0)
    assert np.all(obs[~terminated][:, OBS_DIM + 1 : OBS_DIM + 3].sum(-1) == 1.0)


def test_log_wrapper_counts_inner_episodes(rollout):
    _, steps = rollout
    info = steps["info"]
    np.testing.assert_array_equal(info["returned_episode"], info["episode_done"])
    lengths = np.asarray(info["returned_episode_lengths"])[np.asarray(info["episode_done"])]
    assert np.all((lengths >= 1) & (lengths <= MAX_STEPS))


def test_train_and_test_tasks_are_disjoint():
    train = MetaRL(CARTPOLE, CARTPOLE_PARAMS, obs_dim=OBS_DIM, num_train_tasks=8, num_test_tasks=8)
    test = MetaRL(CARTPOLE, CARTPOLE_PARAMS, obs_dim=OBS_DIM, split="test", num_train_tasks=8, num_test_tasks=8)
    keys = jax.random.split(jax.random.key(1), 256)
    sampled = {}
    for name, meta in (("train", train), ("test", test)):
        _, state = jax.jit(jax.vmap(meta.reset, (0, None)))(keys, meta.default_params)
        sampled[name] = set(np.asarray(state.task_id).tolist())
    assert sampled["train"] == set(range(8)) and sampled["test"] == set(range(8, 16))
    projections = np.asarray(jax.jit(jax.vmap(train.task))(jnp.arange(16))[0]).reshape(16, -1)
    distances = np.abs(projections[:, None] - projections[None]).max(-1)
    assert np.all(distances[~np.eye(16, dtype=bool)] > 1e-3)  # 16 ids (8 per split), 16 distinct tasks


@settings(max_examples=5)
@given(TASK_IDS, TASK_IDS)
def test_task_is_a_pure_function_of_its_id(task_id, other_id):
    projection, permutation = META.task(task_id)
    np.testing.assert_array_equal(projection, META.task(task_id)[0])  # deterministic
    gram = np.asarray(projection @ projection.T)  # [4, 6] with orthonormal rows, scaled by sqrt(2)
    np.testing.assert_allclose(gram, META.obs_scale**2 * np.eye(4), atol=1e-5)
    assert sorted(np.asarray(permutation).tolist()) == [0, 1]
    if task_id != other_id:
        assert not np.allclose(projection, META.task(other_id)[0])


def test_discrete_actions_are_permuted_per_task():
    maze, params = envs.make("MetaMaze-misc")
    meta = MetaRL(maze, params)
    permutations = {tuple(np.asarray(meta.task(i)[1]).tolist()) for i in range(20)}
    assert all(sorted(p) == [0, 1, 2, 3] for p in permutations) and len(permutations) > 5
    perm = meta.task(3)[1]
    assert [int(meta.env_action(perm, a)) for a in range(4)] == np.asarray(perm).tolist()
    fixed = MetaRL(maze, params, permute_actions=False)
    assert {tuple(np.asarray(fixed.task(i)[1]).tolist()) for i in range(5)} == {(0, 1, 2, 3)}


@settings(max_examples=5)
@given(TASK_IDS)
def test_continuous_actions_are_projected_into_bounds(task_id):
    pendulum, params = envs.make("Pendulum-v1")
    meta = MetaRL(pendulum, params, action_dim=3)
    assert meta.action_space(meta.default_params).shape == (3,)
    _, action_map = meta.task(task_id)
    np.testing.assert_allclose(action_map.T @ action_map, np.eye(1), atol=1e-5)  # orthonormal columns
    actions = jax.random.uniform(jax.random.key(task_id), (64, 3), minval=-1.5, maxval=1.5)
    env_actions = np.asarray(jax.vmap(meta.env_action, (None, 0))(action_map, actions))
    assert env_actions.shape == (64, 1) and np.all(np.abs(env_actions) <= params.max_torque + 1e-6)


def test_bad_arguments():
    with pytest.raises(ValueError, match="split"):
        MetaRL(CARTPOLE, CARTPOLE_PARAMS, split="validation")
    catch, params = envs.make("Catch-bsuite")
    with pytest.raises(ValueError, match="flat Box"):
        MetaRL(catch, params)
    with pytest.raises(ValueError, match="episodes_per_trial"):
        MetaRL(CARTPOLE, CARTPOLE_PARAMS, episodes_per_trial=0)

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


# ---- MetaStatelessCartPole: popjaxrl's meta task ---------------------------------------------------------------

MC_TRIALS, MC_MAX_STEPS = 16, 200
MC_CONTROLLED, MC_RANDOM = 2, 6  # envs 0-1 act with a true-state controller, the others at random
MC_ENVS, MC_STEPS = MC_CONTROLLED + MC_RANDOM, MC_TRIALS * MC_MAX_STEPS


@pytest.fixture(scope="module")
def meta_cartpole():
    """One jitted, vmapped rollout of MetaStatelessCartPole for 3200 steps: ``(env, params, obs0, state0, steps)``
    with numpy `[T, N, ...]` steps. The controller keeps the pole up for whole trials (1 episode of 16 x 200 steps);
    random actions drop it within ~22 steps (several episodes)."""
    env, params = envs.make("MetaStatelessCartPole")
    controlled = jnp.arange(MC_ENVS) < MC_CONTROLLED

    @jax.jit
    def run(key):
        key_reset, key_steps = jax.random.split(key)
        obs0, state0 = jax.vmap(env.reset, (0, None))(jax.random.split(key_reset, MC_ENVS), params)

        def body(state, key):
            key_act, key_step = jax.random.split(key)
            s = state.env_state
            feedback = s.x + 1.5 * s.x_dot + 18.0 * s.theta + 3.0 * s.theta_dot
            action = jnp.where(controlled, feedback > 0, jax.random.bernoulli(key_act, 0.5, (MC_ENVS,)))
            action = action.astype(jnp.int32)
            obs, new_state, reward, terminated, truncated, info = jax.vmap(env.step, (0, 0, 0, None))(
                jax.random.split(key_step, MC_ENVS), state, action, params
            )
            out = {"obs": obs, "action": action, "reward": reward, "terminated": terminated, "truncated": truncated,
                   "episode_done": info["episode_done"], "projection": new_state.obs_projection,
                   "trials_done": new_state.episode,
                   "base": jnp.stack([s_.astype(jnp.float32) for s_ in (
                       new_state.env_state.x, new_state.env_state.x_dot, new_state.env_state.theta,
                       new_state.env_state.theta_dot, new_state.env_state.time)], -1)}
            return new_state, out

        return obs0, state0, jax.lax.scan(body, state0, jax.random.split(key_steps, MC_STEPS))[1]

    obs0, state0, steps = jax.device_get(run(jax.random.key(3)))
    return env, params, obs0, state0, steps


def test_meta_cartpole_is_registered_with_popjaxrl_alias_and_settings(meta_cartpole):
    env, params, obs0, _, steps = meta_cartpole
    alias, alias_params = envs.make("NoisyStatelessMetaCartPole")
    assert isinstance(env, MetaRL) and type(alias) is MetaRL and alias_params == params
    assert params.episodes_per_trial == MC_TRIALS and params.env_params.max_steps_in_episode == MC_MAX_STEPS
    assert params.env_params.noise_sigma == 0.0 and env.action_space(params).n == 2
    assert env.observation_space(params).shape == (4 + 1 + 2,)  # projection, previous action, 2 flags
    assert obs0.shape == (MC_ENVS, 7) and steps["obs"].shape == (MC_STEPS, MC_ENVS, 7) and obs0.dtype == np.float32
    assert envs.make("MetaStatelessCartPole", split="test")[0].split == "test"
    with pytest.raises(ValueError, match=r"unknown kwargs \['noise_sigma'\]"):
        envs.make("MetaStatelessCartPole", noise_sigma=0.1)


def test_meta_cartpole_flags_previous_action_and_reward(meta_cartpole):
    _, _, obs0, _, steps = meta_cartpole
    obs, terminated, episode_done = steps["obs"], steps["terminated"], steps["episode_done"]
    np.testing.assert_array_equal(obs0[:, 4:], np.tile([0.0, 0.0, 1.0], (MC_ENVS, 1)))  # reset: no action, start
    np.testing.assert_array_equal(obs[terminated][:, 4:], np.tile([0.0, 0.0, 1.0], (int(terminated.sum()), 1)))
    running = ~terminated
    np.testing.assert_array_equal(obs[running][:, 4], steps["action"][running])  # previous action
    np.testing.assert_array_equal(obs[running][:, 5], episode_done[running])  # trial-done flag
    np.testing.assert_array_equal(obs[running][:, 6], 0.0)  # episode-start flag
    np.testing.assert_allclose(steps["reward"], 1.0 / MC_MAX_STEPS)  # the falling step included
    assert not steps["truncated"].any()


def test_meta_cartpole_16_trials_from_one_initial_state_and_one_projection_per_episode(meta_cartpole):
    _, _, obs0, state0, steps = meta_cartpole
    terminated, episode_done, obs, base = steps["terminated"], steps["episode_done"], steps["obs"], steps["base"]
    assert terminated[:, MC_CONTROLLED:].sum(0).min() >= 2  # every random env finished 2+ episodes of 16 trials
    s0 = state0.env_state
    for n in range(MC_ENVS):
        start = np.array([s0.x[n], s0.x_dot[n], s0.theta[n], s0.theta_dot[n], s0.time[n]], np.float32)
        start_obs, projection, trials, length = obs0[n, :4], state0.obs_projection[n], 0, 0
        for t in range(MC_STEPS):
            length += 1
            if terminated[t, n]:  # a new episode: new initial state and projection, counters restart
                assert trials == MC_TRIALS - 1 and episode_done[t, n] and length <= MC_MAX_STEPS
                assert not np.allclose(steps["projection"][t, n], projection) and base[t, n, 4] == 0
                start, start_obs, projection = base[t, n], obs[t, n, :4], steps["projection"][t, n]
                trials, length = 0, 0
                continue
            assert np.array_equal(steps["projection"][t, n], projection), t  # fixed within the episode
            if episode_done[t, n]:  # the next trial restarts from the episode's initial state and observation
                assert 1 <= length <= MC_MAX_STEPS
                trials, length = trials + 1, 0
                assert np.array_equal(base[t, n], start) and np.array_equal(obs[t, n, :4], start_obs), t
            assert trials < MC_TRIALS and steps["trials_done"][t, n] == trials


def test_meta_cartpole_trials_last_at_most_200_steps_and_return_at_most_one(meta_cartpole):
    """The true-state controller keeps the pole up: 16 trials of exactly 200 steps, each returning 1.0."""
    _, _, _, _, steps = meta_cartpole
    episode_done, terminated = steps["episode_done"][:, :MC_CONTROLLED], steps["terminated"][:, :MC_CONTROLLED]
    for n in range(MC_CONTROLLED):
        np.testing.assert_array_equal(np.flatnonzero(episode_done[:, n]) + 1,
                                      np.arange(1, MC_TRIALS + 1) * MC_MAX_STEPS)
    assert terminated[-1].all() and not terminated[:-1].any()
    np.testing.assert_allclose(steps["reward"][:, :MC_CONTROLLED].sum(0), float(MC_TRIALS), rtol=1e-4)  # 16 x 1.0

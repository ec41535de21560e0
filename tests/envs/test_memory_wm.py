"""The memory world-model suites: registry, jit + vmap, teleport, cue/reward and key/door rules, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ssmrl.envs as envs
from ssmrl.envs.memory_wm import DistractingMemory, MultiDoorsKeys, Rooms
from ssmrl.envs.memory_wm.grid import MOVES, PALETTE
from ssmrl.envs.memory_wm.suite import MEMORY_WM_ENVS

SIZE = 16


def rollout(env, params, key, steps):
    """Data-policy rollout with gymnax's auto-resetting `step`: obs `[T, S, S, 3]`, rewards, dones, states."""
    obs, state = env.reset(key, params)

    def body(state, k):
        k_act, k_step = jax.random.split(k)
        action = env.data_policy(k_act, state, params)
        obs, state, reward, term, trunc, _ = env.step(k_step, state, action, params)
        return state, (obs, reward, term | trunc, state)

    return jax.lax.scan(body, state, jax.random.split(key, steps))[1]


def test_all_registered():
    for name in MEMORY_WM_ENVS:
        env, params = envs.make(f"memory_wm/{name}", image_size=SIZE)
        assert env.observation_space(params).shape == (SIZE, SIZE, 3) and env.num_actions == 4


@pytest.mark.parametrize("name", ["FourRoomsTeleport", "DistractingMemory", "MultiDoorsKeys"])
def test_jit_vmap(name):
    env, params = envs.make(f"memory_wm/{name}", image_size=SIZE, max_steps=6)
    run = jax.jit(jax.vmap(lambda k: rollout(env, params, k, 8)))
    obs, rewards, dones, _ = run(jax.random.split(jax.random.key(0), 3))
    assert obs.shape == (3, 8, SIZE, SIZE, 3) and obs.dtype == jnp.float32
    assert env.observation_space(params).contains(obs[0, 0])
    np.testing.assert_array_equal(dones[:, 5], True)  # 6-step episodes
    assert not np.any(dones[:, :5])
    assert set(np.unique(np.asarray(rewards))) <= {0.0, 1.0}


def test_teleport_returns_to_start():
    env = Rooms(rows=2, cols=2, image_size=SIZE, max_steps=20, teleport_at=7)
    params = env.default_params
    _, state = jax.jit(env.reset_env)(jax.random.key(1), params)
    step = jax.jit(env.step_env)
    for t in range(1, 10):
        _, state, *_ = step(jax.random.key(t), state, jnp.int32(t % 4), params)
        if t == 7:
            np.testing.assert_array_equal(state.pos, state.start)


TWO_ROOMS = Rooms(rows=1, cols=2, image_size=SIZE, max_steps=50)
two_rooms_rollout = jax.jit(lambda k: rollout(TWO_ROOMS, TWO_ROOMS.default_params, k, 40))


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_rooms_moves_respect_walls(seed):
    states = two_rooms_rollout(jax.random.key(seed))[3]
    pos = np.asarray(states.pos)
    free = np.asarray(TWO_ROOMS.layout()[0])
    assert free[pos[:, 0], pos[:, 1]].all()
    assert np.abs(np.diff(pos, axis=0)).sum(-1).max() <= 1


def test_distracting_memory_cue_and_reward():
    env = DistractingMemory(arena=5, num_goals=3, num_distractors=2, image_size=SIZE, max_steps=30)
    params = env.default_params
    reset, step = jax.jit(env.reset_env), jax.jit(env.step_env)
    obs, state = reset(jax.random.key(2), params)
    cue = PALETTE[int(state.goal_colours[state.target])] / 255.0
    np.testing.assert_allclose(obs[0, 0], cue)  # border shows the cue at step 0 only
    # Put the agent next to the target goal and step onto it: reward 1; onto another goal: reward 0.
    goal = state.goals[state.target]
    state = state.replace(pos=goal - MOVES[1])
    state = state.replace(goals=jnp.where(jnp.all(state.goals == state.pos, -1)[:, None], goal + 100, state.goals))
    obs, state, reward, *_ = step(jax.random.key(3), state, jnp.int32(1), params)
    assert float(reward) == 1.0
    assert not np.array_equal(obs[0, 0], cue)
    other = (int(state.target) + 1) % 3
    state = state.replace(pos=state.goals[other] - MOVES[1])
    _, _, reward, *_ = step(jax.random.key(4), state, jnp.int32(1), params)
    assert float(reward) == 0.0


def test_multi_doors_keys_rules():
    env = MultiDoorsKeys(arena=5, num_colours=2, image_size=SIZE, max_steps=30)
    params = env.default_params
    _, state = env.reset_env(jax.random.key(5), params)
    door = state.doors[0]
    interior = np.asarray(env._interior())
    # Without the key the door blocks.
    for action in range(4):
        start = door - MOVES[action]
        if interior[int(start[0]), int(start[1])]:
            break
    state = state.replace(pos=start, keys=jnp.full_like(state.keys, 0))
    _, blocked, reward, *_ = env.step_env(jax.random.key(6), state, jnp.int32(action), params)
    assert float(reward) == 0.0 and np.array_equal(blocked.pos, start) and bool(blocked.door_closed[0])
    # With a key of that colour it opens once, the key is used up, and the agent walks in.
    state = state.replace(held=jnp.array([1, 0]))
    obs_before = env.get_obs(state)
    _, opened, reward, *_ = env.step_env(jax.random.key(7), state, jnp.int32(action), params)
    assert float(reward) == 1.0 and np.array_equal(opened.pos, door)
    assert not bool(opened.door_closed[0]) and int(opened.held[0]) == 0
    # Holding a key is not visible: the observation is the same with or without it.
    np.testing.assert_array_equal(obs_before, env.get_obs(state.replace(held=jnp.array([0, 0]))))
    # Picking up a key: it disappears and is counted.
    key_cell = opened.pos + MOVES[action]
    if interior[int(key_cell[0]), int(key_cell[1])]:
        with_key = opened.replace(keys=opened.keys.at[1].set(key_cell))
        _, picked, *_ = env.step_env(jax.random.key(8), with_key, jnp.int32(action), params)
        assert not bool(picked.key_present[1]) and int(picked.held[1]) == 1


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown kwargs \\['bogus'\\]"):
        envs.make("memory_wm/FourRooms", bogus=1)
    with pytest.raises(ValueError, match="view must be odd"):
        Rooms(view=4)
    with pytest.raises(ValueError, match="num_goals"):
        DistractingMemory(num_goals=99)

"""POPGym control and navigation envs: API, episode mechanics, mazes, and the returns their docstrings state.

Each env at each difficulty gets one jitted rollout of its first episode (`lax.scan` over a vmapped batch
of 64 envs): lanes `[:N_ORACLE]` run a scripted policy that reads the true state (linear feedback for
cartpole, energy-shaping swing-up for pendulum, BFS / deepest-branch-last DFS on the maze for the
labyrinths), the others a uniformly random policy, picked by a traced flag so both share one compile.
"""

import collections
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnasium.envs.classic_control import CartPoleEnv, PendulumEnv
from hypothesis import given, settings
from hypothesis import strategies as st

from ssmrl.envs.popgym import cartpole, labyrinth, pendulum
from ssmrl.envs.popgym.labyrinth import FREE, GOAL, MOVES, NO_ACTION, OBSTACLE, START, generate_maze
from tests.compile_options import FULL_OPTIMIZATION

MODULES = (cartpole, pendulum, labyrinth)
REGISTRY = {name: factory for module in MODULES for name, factory in module.REGISTRY.items()}
NUM_ENVS, N_ORACLE = 64, 16
DUPLICATE = (1, N_ORACLE + 1)  # lanes whose key repeats the previous lane's key
FAR = 10_000  # "unreachable" distance

# ---- oracles: (prepare(state) -> aux, computed once per episode; act(state, aux) -> action)


def _cartpole_act(state, aux):
    gains = (1.0, 1.5, 18.0, 3.0)
    feedback = sum(g * v for g, v in zip(gains, (state.x, state.x_dot, state.theta, state.theta_dot), strict=True))
    return (feedback > 0).astype(jnp.int32)


def _pendulum_act(state, aux):
    """Pump energy `E = theta_dot^2 / 2 + 15 cos(theta)` (dE/dt = 3 u theta_dot) up to the upright E = 15,
    then balance with linear feedback once within about 25 degrees of upright."""
    theta = pendulum.angle_normalize(state.theta)
    energy = 0.5 * state.theta_dot**2 + 15.0 * jnp.cos(theta)
    pump = 2.0 * jnp.sign((15.0 - energy) * state.theta_dot + 1e-6)
    balance = -(12.0 * theta + 3.0 * state.theta_dot)
    return jnp.clip(jnp.where(jnp.cos(theta) > 0.9, balance, pump), -2.0, 2.0)[None].astype(jnp.float32)


def _shifts(x, fill):
    """`x` seen from each action's neighbour: `[4, H, W]`, `out[a, r, c] = x[(r, c) + MOVES[a]]`."""
    h, w = x.shape
    padded = jnp.pad(x, 1, constant_values=fill)
    return jnp.stack([padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] for dr, dc in MOVES.tolist()])


def bfs_distance(grid, source):
    """Shortest-path length from `source` `[2]` to every non-obstacle cell of `grid` `[H, W]` (else FAR)."""
    free = grid != OBSTACLE
    dist = jnp.full(grid.shape, FAR).at[source[0], source[1]].set(0)
    relax = lambda _, d: jnp.where(free, jnp.minimum(d, _shifts(d, FAR).min(0) + 1), FAR)
    return jax.lax.fori_loop(0, grid.size, relax, dist)


def _escape_prepare(state):
    goal = jnp.stack(jnp.unravel_index(jnp.argmax(state.grid == GOAL), state.grid.shape))
    return bfs_distance(state.grid, goal)


def _escape_act(state, dist_to_goal):
    """Step to the neighbour nearest the goal (walls count as staying, which is never nearer)."""
    r, c = state.position
    moved = _shifts(dist_to_goal, FAR)[:, r, c]
    return jnp.argmin(jnp.where(moved >= FAR, dist_to_goal[r, c], moved)).astype(jnp.int32)


def _explore_prepare(state):
    """Depth from the start and, per cell, the largest depth in its subtree (a perfect maze is a tree)."""
    depth = bfs_distance(state.grid, state.position)
    reachable = depth < FAR

    def relax(_, deepest):
        child = _shifts(depth, -1) == depth + 1
        return jnp.where(reachable, jnp.maximum(deepest, jnp.where(child, _shifts(deepest, -1), -1).max(0)), -1)

    return depth, jax.lax.fori_loop(0, state.grid.size, relax, jnp.where(reachable, depth, -1))


def _explore_act(state, aux):
    """Depth-first tour: unexplored child with the shallowest subtree first, else back to the parent."""
    depth, deepest = aux
    r, c = state.position
    nb_depth, nb_deepest = _shifts(depth, FAR)[:, r, c], _shifts(deepest, -1)[:, r, c]
    unexplored_child = (nb_depth == depth[r, c] + 1) & ~_shifts(state.explored, True)[:, r, c]
    parent = nb_depth == depth[r, c] - 1
    score = jnp.where(unexplored_child, nb_deepest, jnp.where(parent, FAR, FAR + 1))
    return jnp.argmin(score).astype(jnp.int32)


_NO_PREP = lambda state: ()
ORACLES = {
    "PositionOnlyCartPole": (_NO_PREP, _cartpole_act),
    "NoisyPositionOnlyCartPole": (_NO_PREP, _cartpole_act),
    "PositionOnlyPendulum": (_NO_PREP, _pendulum_act),
    "NoisyPositionOnlyPendulum": (_NO_PREP, _pendulum_act),
    "LabyrinthEscape": (_escape_prepare, _escape_act),
    "LabyrinthExplore": (_explore_prepare, _explore_act),
}

# Returns stated in the docstrings (measured over >= 512 episodes): (oracle mean, oracle std, random mean,
# random std). The labyrinth oracles are also checked per episode against the maze's optimum.
STATED = {
    "PositionOnlyCartPole": {
        "Easy": (1.0, 0.0, 0.112, 0.058),
        "Medium": (1.0, 0.0, 0.056, 0.029),
        "Hard": (1.0, 0.0, 0.037, 0.019),
    },
    "NoisyPositionOnlyCartPole": {level: (1.0, 0.0, 0.112, 0.058) for level in ("Easy", "Medium", "Hard")},
    "PositionOnlyPendulum": {
        "Easy": (0.91, 0.055, 0.244, 0.177),
        "Medium": (0.88, 0.074, 0.242, 0.182),
        "Hard": (0.82, 0.111, 0.241, 0.189),
    },
    "NoisyPositionOnlyPendulum": {level: (0.91, 0.055, 0.244, 0.177) for level in ("Easy", "Medium", "Hard")},
    "LabyrinthEscape": {
        "Easy": (0.979, 0.007, -0.40, 0.75),
        "Medium": (0.965, 0.012, -0.82, 0.49),
        "Hard": (0.948, 0.019, -0.97, 0.19),
    },
    "LabyrinthExplore": {
        "Easy": (0.982, 0.006, -0.35, 0.18),
        "Medium": (0.958, 0.012, -0.62, 0.13),
        "Hard": (0.920, 0.016, -0.74, 0.09),
    },
}

Rollout = collections.namedtuple("Rollout", "obs0 state0 returns alive_at_end obs reward terminated truncated time")


# long rollouts (64 envs x up to 1024 steps): compiled with full optimisation
@functools.partial(jax.jit, static_argnames=("env", "prepare", "act", "n_steps"), compiler_options=FULL_OPTIMIZATION)
def first_episodes(env, params, prepare, act, n_steps, keys, use_oracle):
    """Roll each lane `[B]` for `n_steps` `T`, summing the rewards of its first episode only.

    Returns a Rollout whose per-step leaves are `[B, T, ...]` and the others `[B, ...]`.
    """

    def one(key, oracle_on):
        key_reset, key_run = jax.random.split(key)
        obs0, state0 = env.reset(key_reset, params)
        aux = prepare(state0)

        def step(carry, key):
            state, alive, ret = carry
            key_act, key_step = jax.random.split(key)
            action = jnp.where(oracle_on, act(state, aux), env.action_space(params).sample(key_act))
            obs, state, reward, terminated, truncated, _ = env.step(key_step, state, action, params)
            ret = ret + jnp.where(alive, reward, 0.0)
            alive = alive & ~(terminated | truncated)
            return (state, alive, ret), (obs, reward, terminated, truncated, state.time)

        (_, alive, ret), traj = jax.lax.scan(step, (state0, True, 0.0), jax.random.split(key_run, n_steps))
        return (obs0, state0, ret, alive, *traj)

    return Rollout(*jax.vmap(one)(keys, use_oracle))


# Cartpole and pendulum difficulties differ only in params (episode length, noise), so each family shares
# one env instance and one compiled rollout, as long as its longest episode.
_CARTPOLE, _PENDULUM = (cartpole.PositionOnlyCartPole(), 600), (pendulum.PositionOnlyPendulum(), 200)
SHARED = {
    "PositionOnlyCartPole": _CARTPOLE,
    "NoisyPositionOnlyCartPole": _CARTPOLE,
    "PositionOnlyPendulum": _PENDULUM,
    "NoisyPositionOnlyPendulum": _PENDULUM,
}


@functools.cache
def rollout(name):
    env_name = name.split("-")[0]
    env = REGISTRY[name]()
    params = env.default_params
    env, n_steps = SHARED.get(env_name, (env, params.max_steps_in_episode))
    keys = jax.random.split(jax.random.key(0), NUM_ENVS)
    for lane in DUPLICATE:
        keys = keys.at[lane].set(keys[lane - 1])
    prepare, act = ORACLES[env_name]
    out = first_episodes(env, params, prepare, act, n_steps, keys, jnp.arange(NUM_ENVS) < N_ORACLE)
    return env, params, jax.tree.map(np.asarray, out)


NAMES = sorted(REGISTRY)


@pytest.mark.parametrize("name", NAMES)
def test_spaces_shapes_and_dtypes(name):
    env, params, out = rollout(name)
    obs_space, action_space = env.observation_space(params), env.action_space(params)
    n_steps = out.reward.shape[1]
    assert out.obs0.shape == (NUM_ENVS, *obs_space.shape) and out.obs0.dtype == np.float32
    assert out.obs.shape == (NUM_ENVS, n_steps, *obs_space.shape) and out.obs.dtype == np.float32
    for obs in (out.obs0, out.obs):
        assert np.all(obs >= np.asarray(obs_space.low)) and np.all(obs <= np.asarray(obs_space.high))
    assert out.reward.shape == (NUM_ENVS, n_steps) and out.reward.dtype == np.float32
    assert out.terminated.dtype == np.bool_ and out.truncated.dtype == np.bool_
    assert np.all(np.abs(out.returns) <= 1.0 + 1e-5)  # POPGym's scaling
    assert env.num_actions == getattr(action_space, "n", 1)


@pytest.mark.parametrize("name", NAMES)
def test_auto_reset_and_time_limit(name):
    _, params, out = rollout(name)
    done = out.terminated | out.truncated
    previous_time = np.concatenate([np.zeros((NUM_ENVS, 1), np.int32), out.time[:, :-1]], axis=1)
    np.testing.assert_array_equal(out.time, np.where(done, 0, previous_time + 1))
    assert not out.alive_at_end.any() and np.all(out.time < params.max_steps_in_episode)


@pytest.mark.parametrize("name", NAMES)
def test_fixed_key_is_deterministic(name):
    _, _, out = rollout(name)
    for lane in DUPLICATE:
        for leaf in jax.tree.leaves(out):
            np.testing.assert_array_equal(leaf[lane], leaf[lane - 1])
    assert not np.array_equal(out.obs[2], out.obs[3])


@pytest.mark.parametrize("name", NAMES)
def test_scripted_policy_reaches_stated_return(name):
    env, params, out = rollout(name)
    env_name, level = name.split("-")
    oracle_mean, oracle_std, _, _ = STATED[env_name][level]
    returns = out.returns[:N_ORACLE]
    # Tolerance: 4 standard errors of the mean + rounding.
    assert abs(returns.mean() - oracle_mean) <= 4 * oracle_std / np.sqrt(N_ORACLE) + 5e-3
    if not env_name.startswith("Labyrinth"):
        return
    # Each maze's optimum, from a BFS on it (see the env docstrings).
    length = params.max_steps_in_episode
    grids, starts = out.state0.grid[:N_ORACLE], out.state0.position[:N_ORACLE]
    depth = np.asarray(jax.vmap(bfs_distance)(jnp.asarray(grids), jnp.asarray(starts)))
    if env_name == "LabyrinthEscape":
        optimum = 1.0 - depth[grids == GOAL] / length
    else:
        n_free = (grids == FREE).sum((1, 2))
        optimum = 1.0 - (n_free - np.where(grids != OBSTACLE, depth, 0).max((1, 2))) / length
    np.testing.assert_allclose(returns, optimum, atol=1e-4)
    assert out.terminated[:N_ORACLE].any(1).all()


@pytest.mark.parametrize("name", NAMES)
def test_random_policy_near_stated_return(name):
    _, _, out = rollout(name)
    env_name, level = name.split("-")
    _, _, random_mean, random_std = STATED[env_name][level]
    independent = np.setdiff1d(np.arange(N_ORACLE, NUM_ENVS), DUPLICATE)
    # Tolerance: 4 standard errors of the mean (std measured over >= 512 episodes) + rounding.
    tolerance = 4 * random_std / np.sqrt(independent.size) + 5e-3
    assert abs(out.returns[independent].mean() - random_mean) <= tolerance


# ---- registry: POPGym's settings per difficulty, names, overrides, bad input

SETTINGS = {  # POPGym's (episode length, noise std) per difficulty; maze_dims for the labyrinths
    "PositionOnlyCartPole": ((200, 0.0), (400, 0.0), (600, 0.0)),
    "NoisyPositionOnlyCartPole": ((200, 0.1), (200, 0.2), (200, 0.3)),
    "PositionOnlyPendulum": ((200, 0.0), (150, 0.0), (100, 0.0)),
    "NoisyPositionOnlyPendulum": ((200, 0.1), (200, 0.2), (200, 0.3)),
    "LabyrinthEscape": ((10, 10), (14, 14), (18, 18)),
    "LabyrinthExplore": ((10, 10), (14, 14), (18, 18)),
}
PORT_NAMES = {  # popjaxrl's names
    "PositionOnlyCartPole": "StatelessCartPole",
    "NoisyPositionOnlyCartPole": "NoisyStatelessCartPole",
    "PositionOnlyPendulum": "StatelessPendulum",
    "NoisyPositionOnlyPendulum": "NoisyStatelessPendulum",
}


@pytest.mark.parametrize("env_name", sorted(SETTINGS))
def test_registry_builds_popgym_settings_and_aliases(env_name):
    aliases = {alias: canonical for module in MODULES for alias, canonical in module.ALIASES.items()}
    for level, setting in zip(("Easy", "Medium", "Hard"), SETTINGS[env_name], strict=True):
        canonical = f"{env_name}-{level}"
        env = REGISTRY[canonical]()
        assert type(env).__name__ == env_name
        params = env.default_params
        if env_name.startswith("Labyrinth"):
            assert env.maze_dims == setting and params.max_steps_in_episode == 1024
        else:
            assert (params.max_steps_in_episode, params.noise_sigma) == setting
        expected = [f"{env_name}{level}", f"popgym-{env_name}{level}-v0"]
        expected += [f"{PORT_NAMES[env_name]}{level}"] if env_name in PORT_NAMES else []
        assert all(aliases[alias] == canonical for alias in expected)


def test_factories_take_overrides_and_reject_bad_input():
    assert REGISTRY["PositionOnlyCartPole-Hard"](noise_sigma=0.5).default_params.noise_sigma == 0.5
    assert REGISTRY["LabyrinthExplore-Easy"](maze_dims=(4, 6)).maze_dims == (4, 6)
    with pytest.raises(ValueError, match="accepted"):
        REGISTRY["PositionOnlyPendulum-Easy"](max_steps=3)
    bad = [
        (cartpole.PositionOnlyCartPole, {"noise_sigma": -0.1}),
        (cartpole.PositionOnlyCartPole, {"max_episode_length": 0}),
        (pendulum.PositionOnlyPendulum, {"max_episode_length": 2.5}),
        (labyrinth.LabyrinthEscape, {"maze_dims": (9, 10)}),
        (labyrinth.LabyrinthExplore, {"maze_dims": (10,)}),
    ]
    for cls, kwargs in bad:
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            cls(**kwargs)


# ---- physics: one step against gymnasium's own CartPole-v1 / Pendulum-v1 (float64)


@functools.partial(jax.jit, static_argnums=0)
def _batched_step_env(env, keys, state, actions, params):
    return jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(keys, state, actions, params)


def batched_step_env(env, seed, state, actions):
    """`env.step_env` at default params over a batch `[B]` of states and actions, as numpy."""
    keys = jax.random.split(jax.random.key(seed), len(actions))
    return jax.tree.map(np.asarray, _batched_step_env(env, keys, state, jnp.asarray(actions), env.default_params))


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=3)
def test_cartpole_step_matches_gymnasium(seed):
    rng = np.random.default_rng(seed)
    states = rng.uniform(-0.2, 0.2, (32, 4)) * np.array([10, 5, 1, 5])
    actions = rng.integers(0, 2, 32).astype(np.int32)
    env = _CARTPOLE[0]
    fields = dict(zip(("x", "x_dot", "theta", "theta_dot"), jnp.asarray(states.T, jnp.float32), strict=True))
    state = cartpole.CartPoleState(**fields, time=jnp.zeros(32, jnp.int32))
    obs, new, reward, terminated, _ = batched_step_env(env, seed, state, actions)
    reference = CartPoleEnv()
    reference.reset(seed=seed)
    for i in range(32):
        reference.state, reference.steps_beyond_terminated = states[i], None
        _, ref_reward, ref_terminated, _, _ = reference.step(int(actions[i]))
        ours = np.array([new.x[i], new.x_dot[i], new.theta[i], new.theta_dot[i]])
        np.testing.assert_allclose(ours, reference.state, rtol=1e-5, atol=1e-5)
        assert terminated[i] == ref_terminated
        assert reward[i] == np.float32(ref_reward / env.default_params.max_steps_in_episode)
        np.testing.assert_allclose(obs[i], ours[[0, 2]], rtol=1e-6)


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=3)
def test_pendulum_step_matches_gymnasium(seed):
    rng = np.random.default_rng(seed)
    states = rng.uniform([-np.pi, -8.0], [np.pi, 8.0], (32, 2))
    torques = rng.uniform(-3.0, 3.0, (32, 1)).astype(np.float32)  # beyond the limit too: clipped
    env = _PENDULUM[0]
    theta, theta_dot = jnp.asarray(states.T, jnp.float32)
    state = pendulum.PendulumState(theta=theta, theta_dot=theta_dot, time=jnp.zeros(32, jnp.int32))
    obs, new, reward, terminated, _ = batched_step_env(env, seed, state, torques)
    reference = PendulumEnv()
    reference.reset(seed=seed)
    half_cost = pendulum.MAX_COST / 2
    for i in range(32):
        reference.state = states[i]
        ref_obs, ref_reward, _, _, _ = reference.step(torques[i])
        np.testing.assert_allclose(obs[i], ref_obs[:2], atol=1e-5)
        np.testing.assert_allclose(new.theta_dot[i], ref_obs[2], atol=1e-5)
        expected = (ref_reward + half_cost) / half_cost / env.default_params.max_steps_in_episode
        np.testing.assert_allclose(reward[i], expected, rtol=1e-5, atol=1e-7)
    assert not terminated.any()


# ---- labyrinths: mechanics on a hand-made maze, generated mazes, likeness to mazelib's hunt-and-kill


def _corridor_state(env, explore):
    """A 3x5 grid: start (1, 0), free (1, 1..3), goal (1, 4) (a wall for Explore), walls elsewhere."""
    grid = np.full((3, 5), OBSTACLE, np.int32)
    grid[1, :] = [START, FREE, FREE, FREE, OBSTACLE if explore else GOAL]
    return env.reset(jax.random.key(1))[1].replace(
        grid=jnp.asarray(grid),
        explored=jnp.zeros((3, 5), bool).at[1, 0].set(True),
        position=jnp.array([1, 0], jnp.int32),
    )


def _decode(obs):
    """`[50]` one-hot observation -> (3x3 cell codes, previous action)."""
    return np.argmax(obs[:45].reshape(9, 5), -1).reshape(3, 3), int(np.argmax(obs[45:]))


@pytest.mark.parametrize("explore", [False, True])
def test_labyrinth_moves_view_and_rewards_on_a_corridor(explore):
    env = (labyrinth.LabyrinthExplore if explore else labyrinth.LabyrinthEscape)(maze_dims=(2, 4))
    params, key = env.default_params, jax.random.key(0)
    state = _corridor_state(env, explore)
    view, previous = _decode(env.get_obs(state))
    np.testing.assert_array_equal(view, [[1, 1, 1], [1, START, FREE], [1, 1, 1]])  # centred, off-grid = wall
    assert previous == NO_ACTION
    # bump left (off-grid), up and down (walls); right, right, back left, right, right (, right onto the goal)
    actions = (0, 2, 3, 1, 1, 0, 1, 1) + (() if explore else (1,))
    rewards, ends = [], []
    for action in actions:
        obs, state, reward, terminated, _ = env.step_env(key, state, action, params)
        rewards.append(float(reward))
        ends.append(bool(terminated))
        assert _decode(obs)[1] == action
    cost = 1 / params.max_steps_in_episode
    if explore:  # 3 free cells besides the start, 1/3 each on first entry; entering the last one ends it
        expected = [-cost, -cost, -cost, 1 / 3, 1 / 3, -cost, -cost, 1 / 3]
    else:
        expected = [-cost] * 8 + [1 - cost]
    np.testing.assert_allclose(rewards, expected, rtol=1e-6)
    assert ends == [False] * (len(actions) - 1) + [True]


def _bfs(grid, source):
    """Python BFS over non-obstacle cells: {cell: distance from source}."""
    dist, frontier = {tuple(source): 0}, [tuple(source)]
    while frontier:
        nxt = []
        for r, c in frontier:
            for dr, dc in MOVES.tolist():
                cell = (r + dr, c + dc)
                inside = 0 <= cell[0] < grid.shape[0] and 0 <= cell[1] < grid.shape[1]
                if inside and grid[cell] != OBSTACLE and cell not in dist:
                    dist[cell] = dist[(r, c)] + 1
                    nxt.append(cell)
        frontier = nxt
    return dist


def assert_perfect_maze(grid, start, end=None):
    """Every room open; the border closed but for the start (and end) entrance; free cells a spanning tree.

    With `end`, also checks that both entrances are odd cells of opposite outer walls.
    """
    assert np.all(grid[1::2, 1::2] != OBSTACLE)
    border = np.ones_like(grid, bool)
    border[1:-1, 1:-1] = False
    openings = {tuple(cell) for cell in np.argwhere(border & (grid != OBSTACLE))}
    assert openings == {tuple(start)} | ({tuple(end)} if end is not None else set())
    if end is not None:
        across = [axis for axis in (0, 1) if {start[axis], end[axis]} == {0, grid.shape[axis] - 1}]
        assert len(across) == 1 and start[1 - across[0]] % 2 == end[1 - across[0]] % 2 == 1
    free = grid != OBSTACLE
    edges = (free[1:] & free[:-1]).sum() + (free[:, 1:] & free[:, :-1]).sum()
    assert len(_bfs(grid, start)) == free.sum() == edges + 1  # connected, and a tree


@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith("Labyrinth")])
def test_env_mazes_are_connected_perfect_mazes(name):
    env, _, out = rollout(name)
    for grid, start in zip(out.state0.grid, out.state0.position, strict=True):
        assert grid[tuple(start)] == START and grid.shape == tuple(d + 1 for d in env.maze_dims)
        goals = np.argwhere(grid == GOAL)  # Explore keeps the end entrance closed
        assert len(goals) == name.startswith("LabyrinthEscape")
        assert_perfect_maze(grid, start, goals[0] if len(goals) else None)


_generate_batch = jax.jit(jax.vmap(generate_maze, in_axes=(0, None)), static_argnums=1)


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=4)
def test_generated_rectangular_mazes_are_connected_perfect_mazes(seed):
    grids, starts, ends = map(np.asarray, _generate_batch(jax.random.split(jax.random.key(seed), 8), (6, 12)))
    for grid, start, end in zip(grids, starts, ends, strict=True):
        assert grid.shape == (7, 13) and grid[tuple(start)] == grid[tuple(end)] == OBSTACLE
        opened = grid.copy()
        opened[tuple(start)] = opened[tuple(end)] = FREE
        assert_perfect_maze(opened, start, end)


# ---- labyrinth auto-reset onto the next maze, carved `carves_per_step` hunt-and-kill iterations per step


@functools.partial(jax.jit, static_argnames=("env", "n_steps"))
def _many_episodes(env, params, keys, use_oracle, n_steps):
    """Rollouts `[B]` over many episodes through `env.step`, each lane with its env's scripted policy (prepared
    anew at each episode start) or uniformly random actions: states `[B, T + 1, ...]` (after the reset, then
    after each step) and each step's terminated, truncated `[B, T]`."""
    prepare, act = ORACLES[type(env).__name__]

    def one(key, oracle_on):
        key_reset, key_run = jax.random.split(key)
        state0 = env.reset(key_reset, params)[1]

        def step(carry, key):
            state, aux = carry
            aux = jax.tree.map(lambda new, old: jnp.where(state.time == 0, new, old), prepare(state), aux)
            key_act, key_step = jax.random.split(key)
            action = jnp.where(oracle_on, act(state, aux), env.action_space(params).sample(key_act))
            _, state, _, terminated, truncated, _ = env.step(key_step, state, action, params)
            return (state, aux), (state, terminated, truncated)

        keys = jax.random.split(key_run, n_steps)
        _, (states, terminated, truncated) = jax.lax.scan(step, (state0, prepare(state0)), keys)
        states = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), state0, states)
        return states, terminated, truncated

    return jax.vmap(one)(keys, use_oracle)


def many_episodes(env, episode_length, seed, num_envs, n_steps):
    """`_many_episodes` as numpy, with the first half of the lanes scripted (so episodes also end by termination,
    as soon as the maze allows) and `max_steps_in_episode=episode_length`."""
    params = env.default_params.replace(max_steps_in_episode=episode_length)
    keys = jax.random.split(jax.random.key(seed), num_envs)
    return jax.tree.map(np.asarray, _many_episodes(env, params, keys, jnp.arange(num_envs) < num_envs // 2, n_steps))


CARVING = {  # (env, maze_dims) -> carves_per_step: ceil((rooms - 1) / the shortest episode that can terminate)
    (labyrinth.LabyrinthExplore, (4, 6)): 1,  # 6 rooms, >= 11 steps to see all 12 open cells
    (labyrinth.LabyrinthEscape, (6, 8)): 2,  # 12 rooms, >= 6 steps between opposite walls
    (labyrinth.LabyrinthEscape, (2, 16)): 4,  # 8 rooms, >= 2 steps between the north and south walls
}
CARVING_ENVS = {case: case[0](maze_dims=case[1]) for case in CARVING}  # one instance each: one compile


@pytest.mark.parametrize("case", list(CARVING), ids=lambda case: f"{case[0].__name__}-{case[1]}")
@given(seed=st.integers(0, 2**31 - 1), episode_length=st.sampled_from([2, 3, 5, 8, 1024]))
@settings(max_examples=4, deadline=None)
def test_auto_reset_mazes_are_generate_maze_of_the_carried_seed(case, seed, episode_length):
    """Every auto-reset starts on exactly `generate_maze` of the seed that the state carried, however its carving
    was split over steps (1, 2 or 4 iterations a step; episodes truncated before it was complete included); the
    carving advances `carves_per_step` a step and is complete before any episode terminates (the bound)."""
    env, k = CARVING_ENVS[case], CARVING[case]
    assert env.carves_per_step == k
    states, terminated, truncated = many_episodes(env, episode_length, seed, num_envs=8, n_steps=48)
    carving, done = states.next_maze, terminated | truncated
    n_blocks = (env.maze_dims[0] // 2) * (env.maze_dims[1] // 2)
    # the one-shot maze of the seed carried into each step
    seeds = jax.random.wrap_key_data(jnp.asarray(carving.seed[:, :-1].reshape(-1, carving.seed.shape[-1])))
    one_shot = _generate_batch(seeds, env.maze_dims)
    grids, starts, ends = (np.asarray(x).reshape(*done.shape, *x.shape[1:]) for x in one_shot)
    for i, j in zip(*np.nonzero(done), strict=True):
        expected = grids[i, j].copy()
        expected[tuple(starts[i, j])] = START
        if isinstance(env, labyrinth.LabyrinthEscape):
            expected[tuple(ends[i, j])] = GOAL
        np.testing.assert_array_equal(states.grid[i, j + 1], expected)
        np.testing.assert_array_equal(states.position[i, j + 1], starts[i, j])
        assert states.time[i, j + 1] == 0 and states.explored[i, j + 1].sum() == 1
    assert np.all((carving.grid[:, :-1] == FREE) <= (grids == FREE))  # carving so far: part of that maze
    assert np.all(carving.carved[:, 1:][done] == 1)  # the following maze is begun
    advanced = np.minimum(carving.carved[:, :-1] + k, n_blocks)
    np.testing.assert_array_equal(carving.carved[:, 1:][~done], advanced[~done])
    assert np.all(carving.carved[:, :-1][terminated] + k >= n_blocks)  # no termination before the maze is done


@pytest.mark.parametrize("cls", [labyrinth.LabyrinthEscape, labyrinth.LabyrinthExplore])
def test_early_truncation_auto_resets_to_a_complete_perfect_maze(cls):
    """Episodes of 2 or 3 steps at Hard size (80 carve iterations, 5 or 1 a step) still restart on a complete maze."""
    env = cls(maze_dims=(18, 18))
    for episode_length in (2, 3):
        states, terminated, truncated = many_episodes(env, episode_length, episode_length, num_envs=4, n_steps=7)
        done = terminated | truncated
        assert done.sum(1).min() >= 2
        for i, j in zip(*np.nonzero(done), strict=True):
            grid, start = states.grid[i, j + 1], states.position[i, j + 1]
            goals = np.argwhere(grid == GOAL)
            assert grid[tuple(start)] == START and len(goals) == (cls is labyrinth.LabyrinthEscape)
            assert_perfect_maze(grid, start, goals[0] if len(goals) else None)


def mazelib_hunt_and_kill(rng, h, w):
    """NumPy transcription of mazelib's rules (HuntAndKill, 'random' hunt; outer entrances): grid, start, end."""
    height, width = 2 * h + 1, 2 * w + 1
    grid = np.ones((height, width), np.int32)
    row, col = 2 * rng.integers(h) + 1, 2 * rng.integers(w) + 1
    grid[row, col] = FREE
    for trial in range(height * width + 1):
        if grid[row, col] == FREE:  # random walk into unvisited rooms until stuck
            while True:
                options = [
                    (row + 2 * dr, col + 2 * dc)
                    for dr, dc in MOVES.tolist()
                    if 0 < row + 2 * dr < height and 0 < col + 2 * dc < width and grid[row + 2 * dr, col + 2 * dc]
                ]
                if not options:
                    break
                new_row, new_col = options[rng.integers(len(options))]
                grid[new_row, new_col] = grid[(row + new_row) // 2, (col + new_col) // 2] = FREE
                row, col = new_row, new_col
        if trial < height * width:  # hunt: a uniformly random room, walked from only if visited
            row, col = 2 * rng.integers(h) + 1, 2 * rng.integers(w) + 1
    side, start_off, end_off = rng.integers(4), 2 * rng.integers(w) + 1, 2 * rng.integers(w) + 1  # square
    far = 2 * h if side < 2 else 2 * w
    start_wall = 0 if side % 2 == 0 else far
    start, end = (start_wall, start_off), (far - start_wall, end_off)
    return grid, (start if side < 2 else start[::-1]), (end if side < 2 else end[::-1])


def _maze_statistics(grid, start, end):
    """(dead-end rooms, start-to-end path length) of a maze whose entrances are still walls."""
    free = np.pad(grid == FREE, 1)
    open_sides = free[:-2, 1:-1].astype(int) + free[2:, 1:-1] + free[1:-1, :-2] + free[1:-1, 2:]
    dead_ends = ((open_sides == 1) & (grid == FREE))[1::2, 1::2].sum()
    opened = grid.copy()
    opened[tuple(start)] = opened[tuple(end)] = FREE
    return dead_ends, _bfs(opened, start)[tuple(end)]


def test_mazes_resemble_mazelib_hunt_and_kill():
    """Same kind of mazes as POPGym's: mean dead ends and mean start-to-end path length at Hard (9x9 rooms)
    agree with the NumPy transcription of mazelib within 4 standard errors of their difference."""
    _, _, out = rollout("LabyrinthEscape-Hard")
    ours = []
    for grid, start in zip(out.state0.grid, out.state0.position, strict=True):
        end = np.argwhere(grid == GOAL)[0]
        raw = np.where(grid == FREE, FREE, OBSTACLE)
        ours.append(_maze_statistics(raw, start, end))
    rng = np.random.default_rng(0)
    theirs = [_maze_statistics(*mazelib_hunt_and_kill(rng, 9, 9)) for _ in range(200)]
    ours, theirs = np.array(ours, float), np.array(theirs, float)
    standard_error = np.sqrt(ours.var(0) / len(ours) + theirs.var(0) / len(theirs))
    assert np.all(np.abs(ours.mean(0) - theirs.mean(0)) <= 4 * standard_error), (ours.mean(0), theirs.mean(0))

"""POPGym's LabyrinthEscape and LabyrinthExplore, with a jittable hunt-and-kill maze generator.

Grids follow POPGym (which uses ``mazelib``): a maze of ``h x w`` blocks is a ``[2h+1, 2w+1]`` grid whose
odd-odd cells are rooms and whose other cells are walls or carved passages; the start and the end
entrances are cells of two opposite outer walls. Cell codes are POPGym's: 0 free, 1 obstacle, 2 start,
3 goal. Actions are POPGym's: 0 left, 1 right, 2 up, 3 down (4, "none", only appears in the first
observation of an episode).
"""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment, spaces

from ssmrl.envs.popgym.cards import check_int, difficulty_registry

FREE, OBSTACLE, START, GOAL = 0, 1, 2, 3
NUM_CELL_CODES = 5  # POPGym also declares a HIDDEN code (4) that observations never contain
NO_ACTION = 4
MOVES = np.array([[0, -1], [0, 1], [-1, 0], [1, 0]], np.int32)  # (drow, dcol) of actions 0..3
OBS_SIZE = 9 * NUM_CELL_CODES + len(MOVES) + 1


def _unvisited_neighbours(visited: jax.Array) -> jax.Array:
    """`[h, w]` bool -> `[h, w, 4]` bool: is the block one step away along each action unvisited?"""
    h, w = visited.shape
    padded = jnp.pad(~visited, 1, constant_values=False)
    return jnp.stack([padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] for dr, dc in MOVES.tolist()], -1)


def _pick(uniforms: jax.Array, mask: jax.Array) -> jax.Array:
    """Index of a uniformly random True entry of the 1-D `mask`, given i.i.d. uniforms shaped like it."""
    return jnp.argmax(jnp.where(mask, uniforms, -1.0))


def _open(grid: jax.Array, *cells: jax.Array) -> jax.Array:
    """`grid` with the (row, col) `[2]` `cells` set to FREE (by a mask, as `_carve_step` avoids traced indices)."""
    rows, cols = jnp.arange(grid.shape[0])[:, None], jnp.arange(grid.shape[1])
    hit = jnp.zeros(grid.shape, bool)
    for cell in cells:
        hit = hit | ((rows == cell[0]) & (cols == cell[1]))
    return jnp.where(hit, FREE, grid)


def _first_room(key: jax.Array, h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """Start of the hunt-and-kill carving drawn by `key`: the `[2h+1, 2w+1]` grid with one uniformly random room
    open, and that room's block index (row-major over the `[h, w]` blocks)."""
    first = _pick(jax.random.uniform(jax.random.fold_in(key, 0), (h * w,)), jnp.ones(h * w, bool))
    grid = jnp.full((2 * h + 1, 2 * w + 1), OBSTACLE, jnp.int32)
    return _open(grid, 2 * jnp.stack([first // w, first % w]) + 1), first.astype(jnp.int32)


def _carve_step(key: jax.Array, index: jax.Array, grid: jax.Array, head: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Hunt-and-kill iteration `index` (1 .. h*w - 1) of the maze drawn by `key`: open one more room and its passage.

    The walk carves on from `head` (the room opened last) into a uniformly random unvisited neighbour; when
    `head` has none, it restarts from a uniformly random visited room that has one (the hunt). Each iteration
    draws from its own key, `fold_in(key, index)`, so the maze does not depend on how the iterations are split
    over calls. Returns the grid and the new room's block index (the next `head`).
    """
    h, w = grid.shape[0] // 2, grid.shape[1] // 2
    n_blocks = h * w
    uniforms = jax.random.uniform(jax.random.fold_in(key, index), (n_blocks + 4,))
    blocks = jnp.arange(n_blocks)
    visited = grid[1::2, 1::2] == FREE
    open_dirs = (_unvisited_neighbours(visited) & visited[..., None]).reshape(n_blocks, 4)
    can_grow = open_dirs.any(-1)
    # masked reductions instead of gathers at traced indices: faster to compile and to run under vmap
    walk_on = jnp.any(can_grow & (blocks == head))
    source = jnp.where(walk_on, head, _pick(uniforms[:n_blocks], can_grow))
    direction = _pick(uniforms[n_blocks:], jnp.any(open_dirs & (blocks == source)[:, None], 0))
    source_rc = jnp.stack([source // w, source % w])
    step = jnp.asarray(MOVES)[direction]
    new_rc = source_rc + step
    grid = _open(grid, 2 * new_rc + 1, 2 * source_rc + 1 + step)
    return grid, (new_rc[0] * w + new_rc[1]).astype(jnp.int32)


def _entrances(key: jax.Array, h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """Start and end `[2]` int32 (row, col): random odd cells of two opposite outer walls (random sides)."""
    key_side, key_offsets = jax.random.split(key)
    side = jax.random.randint(key_side, (), 0, 4)  # start on the north, south, west or east wall
    along_rows = side >= 2
    start_off, end_off = 2 * jax.random.randint(key_offsets, (2,), 0, jnp.where(along_rows, h, w)) + 1
    far_wall = jnp.where(along_rows, 2 * w, 2 * h)
    start_wall = jnp.where(side % 2 == 0, 0, far_wall)
    end_wall = far_wall - start_wall
    start = jnp.where(along_rows, jnp.stack([start_off, start_wall]), jnp.stack([start_wall, start_off]))
    end = jnp.where(along_rows, jnp.stack([end_off, end_wall]), jnp.stack([end_wall, end_off]))
    return start.astype(jnp.int32), end.astype(jnp.int32)


@partial(jax.jit, static_argnames=("maze_dims",))
def generate_maze(key: jax.Array, maze_dims: tuple[int, int]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Random perfect maze with two outer entrances, as ``mazelib``'s ``HuntAndKill`` + outer entrances.

    Hunt-and-kill: a random walk carves passages into unvisited blocks until it is stuck; it then restarts
    from a uniformly random visited block that still has an unvisited neighbour (mazelib's "random" hunt,
    which draws random blocks until one qualifies). Every iteration carves exactly one new block, so the
    loop has the fixed length ``h * w - 1`` and always ends with every block connected (mazelib's bounded
    number of draws leaves a block uncarved with tiny probability; this version never does).
    The start is a random odd cell of a random outer wall, the end one of the opposite wall.
    The envs carve the same mazes a few iterations per step (`MazeCarving`) with the same `_carve_step`.

    Args:
        key: PRNG key.
        maze_dims: static `(height, width)`, both even (POPGym's ``maze_dims``): `h, w = maze_dims // 2`
            blocks on a grid of `H, W = maze_dims + 1` cells.
    Returns:
        grid `[H, W]` int32 of FREE / OBSTACLE, start `[2]` and end `[2]` int32 (row, col) on opposite
        outer walls (still OBSTACLE in `grid`; the envs open them).
    """
    h, w = maze_dims[0] // 2, maze_dims[1] // 2
    key_carve, key_ends = jax.random.split(key)
    carry = _first_room(key_carve, h, w)
    grid, _ = jax.lax.fori_loop(1, h * w, lambda index, carry: _carve_step(key_carve, index, *carry), carry)
    return (grid, *_entrances(key_ends, h, w))


def _maze_keys(seed: jax.Array) -> jax.Array:
    """The carving and entrance keys `[2]` of the maze drawn by key data `seed`, split as in `generate_maze`."""
    return jax.random.split(jax.random.wrap_key_data(seed))


@chex.dataclass(frozen=True)
class MazeCarving:
    """A maze being carved: the next episode's, a few hunt-and-kill iterations per step (see `_Labyrinth`).

    seed `[S]` uint32: key data of the key that draws it; once complete it is exactly
    `generate_maze(jax.random.wrap_key_data(seed), maze_dims)` (raw data rather than a typed key, so that
    states can be checkpointed). grid `[H, W]` int32: FREE / OBSTACLE, the rooms and passages carved so far.
    head int32: block index of the room carved last, where the walk goes on. carved int32: rooms carved so
    far, `1 .. h * w` (complete at `h * w`).
    """

    seed: jax.Array
    grid: jax.Array
    head: jax.Array
    carved: jax.Array


@chex.dataclass(frozen=True)
class LabyrinthState:
    """grid `[H, W]` int32 cell codes, explored `[H, W]` bool, position `[2]` (row, col), scalars, and the
    next episode's maze being carved (`MazeCarving`)."""

    grid: jax.Array
    explored: jax.Array
    position: jax.Array
    last_action: jax.Array
    time: jax.Array
    next_maze: MazeCarving


@chex.dataclass(frozen=True)
class LabyrinthParams:
    max_steps_in_episode: int = 1024


class _Labyrinth(environment.Environment):
    """Shared maze mechanics of POPGym's ``MazeEnv``; subclasses set the goal cell, the reward and the shortest
    episode that can end by termination.

    Auto-reset: gymnax's `step` calls `reset_env` on every step and keeps its result only where the episode
    ended, which here would generate a whole maze (`h * w - 1` carve iterations) per step. Instead the state
    carries the next episode's maze (`LabyrinthState.next_maze`), carved `carves_per_step` iterations per step;
    on termination or truncation the next episode starts on it and the following maze is begun, so a rollout
    pays for one maze per episode. `carves_per_step` is the smallest count that completes the maze before the
    episode can end by termination (``ceil((h * w - 1) / shortest episode)``); an episode that ends sooner (only
    by truncation at a tiny ``episode_length``) has the rest carved on its last step. Mazes, observations,
    rewards, ends and `info` are as with gymnax's `step`; `reset_env(key)` depends on `key` only.
    """

    obs_requires_prev_action = True  # POPGym's flag; as in POPGym the observation already ends with it
    mark_goal: bool

    def __init__(self, maze_dims: tuple[int, int] = (10, 10), episode_length: int = 1024):
        super().__init__()
        if len(maze_dims) != 2 or any(check_int("maze_dims", d, 2) % 2 for d in maze_dims):
            raise ValueError(f"maze_dims must be two even integers >= 2, got {maze_dims!r}")
        self.maze_dims = (int(maze_dims[0]), int(maze_dims[1]))
        self._default_params = LabyrinthParams(max_steps_in_episode=check_int("episode_length", episode_length, 2))
        self._blocks = h, w = self.maze_dims[0] // 2, self.maze_dims[1] // 2
        self.carves_per_step = -(-(h * w - 1) // self._shortest_episode(h, w))
        self._seed_shape = jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0))).shape

    @staticmethod
    def _shortest_episode(h: int, w: int) -> int:
        """A lower bound on the steps of an episode that ends by termination, in a maze of `h x w` blocks."""
        raise NotImplementedError

    @property
    def default_params(self) -> LabyrinthParams:
        return self._default_params

    def _begin_carving(self, key: jax.Array) -> MazeCarving:
        """A new `MazeCarving` drawn by `key`, with its first room open."""
        seed = jax.random.bits(key, self._seed_shape, jnp.uint32)
        grid, head = _first_room(_maze_keys(seed)[0], *self._blocks)
        return MazeCarving(seed=seed, grid=grid, head=head, carved=jnp.int32(1))

    def _carve(self, maze: MazeCarving, target: jax.Array) -> MazeCarving:
        """`maze` carved on until `target` rooms are open (a no-op where already there)."""
        key_carve = _maze_keys(maze.seed)[0]

        def body(maze):
            grid, head = _carve_step(key_carve, maze.carved, maze.grid, maze.head)
            return maze.replace(grid=grid, head=head, carved=maze.carved + 1)

        return jax.lax.while_loop(lambda maze: maze.carved < target, body, maze)

    def _new_episode(
        self, grid: jax.Array, start: jax.Array, end: jax.Array, key_next: jax.Array, params: LabyrinthParams
    ) -> tuple[jax.Array, LabyrinthState]:
        """First observation and state of an episode on the maze (`grid`, `start`, `end`), with the next maze
        begun from `key_next`."""
        grid = grid.at[start[0], start[1]].set(START)
        if self.mark_goal:
            grid = grid.at[end[0], end[1]].set(GOAL)
        state = LabyrinthState(
            grid=grid,
            explored=jnp.zeros(grid.shape, bool).at[start[0], start[1]].set(True),
            position=start,
            last_action=jnp.int32(NO_ACTION),
            time=jnp.int32(0),
            next_maze=self._begin_carving(key_next),
        )
        return self.get_obs(state, params), state

    def reset_env(self, key: jax.Array, params: LabyrinthParams) -> tuple[jax.Array, LabyrinthState]:
        key_maze, key_next = jax.random.split(key)
        return self._new_episode(*generate_maze(key_maze, self.maze_dims), key_next, params)

    @partial(jax.jit, static_argnames=("self",))
    def step(
        self, key: jax.Array, state: LabyrinthState, action: jax.Array, params: LabyrinthParams | None = None
    ) -> tuple[jax.Array, LabyrinthState, jax.Array, jax.Array, jax.Array, dict]:
        """gymnax's `step` (same outputs and `info`), auto-resetting onto the pre-carved `state.next_maze`."""
        params = self.default_params if params is None else params
        key_step, key_reset = jax.random.split(key)
        obs_st, state_st, reward, terminated, info = self.step_env(key_step, state, action, params)
        truncated = self.is_truncated(state_st, params)
        done = jnp.logical_or(terminated, truncated)
        n_blocks = self._blocks[0] * self._blocks[1]
        # carves_per_step more rooms; all those left if the episode ended (none, unless truncated very early)
        target = jnp.where(done, n_blocks, jnp.minimum(state.next_maze.carved + self.carves_per_step, n_blocks))
        maze = self._carve(state.next_maze, target)
        entrances = _entrances(_maze_keys(maze.seed)[1], *self._blocks)
        obs_re, state_re = self._new_episode(maze.grid, *entrances, key_reset, params)
        state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), state_re, state_st.replace(next_maze=maze))
        obs = jax.lax.select(done, obs_re, obs_st)
        info = {**info, "terminated": terminated, "truncated": truncated, "final_observation": obs_st}
        return obs, state, reward, terminated, truncated, info

    def step_env(
        self, key: jax.Array, state: LabyrinthState, action: jax.Array, params: LabyrinthParams
    ) -> tuple[jax.Array, LabyrinthState, jax.Array, jax.Array, dict]:
        action = jnp.asarray(action, jnp.int32)
        target = jnp.clip(state.position + jnp.asarray(MOVES)[action], 0, jnp.array(state.grid.shape) - 1)
        blocked = state.grid[target[0], target[1]] == OBSTACLE
        position = jnp.where(blocked, state.position, target)
        new_state = state.replace(
            explored=state.explored.at[position[0], position[1]].set(True),
            position=position,
            last_action=action,
            time=state.time + 1,
        )
        reward, terminated = self._reward(state, new_state, params)
        return self.get_obs(new_state, params), new_state, reward.astype(jnp.float32), terminated, {}

    def _reward(
        self, state: LabyrinthState, new_state: LabyrinthState, params: LabyrinthParams
    ) -> tuple[jax.Array, jax.Array]:
        raise NotImplementedError

    def is_truncated(self, state: LabyrinthState, params: LabyrinthParams) -> jax.Array:
        # POPGym truncates when its step counter, incremented first, equals episode_length - 1.
        return state.time >= params.max_steps_in_episode - 1

    def get_obs(self, state: LabyrinthState, params=None, key=None) -> jax.Array:
        """3x3 cells around the agent (outside the grid reads as obstacle) + last action, one-hot: `[50]`."""
        padded = jnp.pad(state.grid, 1, constant_values=OBSTACLE)
        view = jax.lax.dynamic_slice(padded, (state.position[0], state.position[1]), (3, 3))
        return jnp.concatenate(
            [
                jax.nn.one_hot(view.reshape(9), NUM_CELL_CODES, dtype=jnp.float32).reshape(-1),
                jax.nn.one_hot(state.last_action, len(MOVES) + 1, dtype=jnp.float32),
            ]
        )

    @property
    def num_actions(self) -> int:
        return len(MOVES)

    def action_space(self, params: LabyrinthParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(len(MOVES))

    def observation_space(self, params: LabyrinthParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (OBS_SIZE,), jnp.float32)

    def state_space(self, params: LabyrinthParams | None = None) -> spaces.Dict:
        shape = (self.maze_dims[0] + 1, self.maze_dims[1] + 1)
        n_blocks = self._blocks[0] * self._blocks[1]
        return spaces.Dict(
            {
                "grid": spaces.Box(FREE, GOAL, shape, jnp.int32),
                "explored": spaces.Box(0, 1, shape, jnp.bool_),
                "position": spaces.Box(0, max(shape) - 1, (2,), jnp.int32),
                "last_action": spaces.Discrete(len(MOVES) + 1),
                "time": spaces.Discrete(self._default_params.max_steps_in_episode),
                "next_maze": spaces.Dict(
                    {
                        "seed": spaces.Box(0, np.uint32(2**32 - 1), self._seed_shape, jnp.uint32),
                        "grid": spaces.Box(FREE, OBSTACLE, shape, jnp.int32),
                        "head": spaces.Discrete(n_blocks),
                        "carved": spaces.Box(1, n_blocks, (), jnp.int32),
                    }
                ),
            }
        )


class LabyrinthEscape(_Labyrinth):
    """Find the exit of a random maze from a 3x3 local view (POPGym's LabyrinthEscape).

    Each episode draws a new hunt-and-kill maze (see `generate_maze`) of 11x11 / 15x15 / 19x19 cells at
    Easy / Medium / Hard (POPGym's maze_dims 10 / 14 / 18). The agent starts on an entrance in one outer
    wall; the goal is the entrance in the opposite wall. Observation `[50]` float32: the one-hot cell codes
    (free, obstacle, start, goal, hidden) of the 3x3 cells around the agent, row by row, then the one-hot
    previous action (4 = none at reset). Actions: Discrete(4), left / right / up / down; moves into walls
    or off the grid leave the agent in place.

    Episode: ends on reaching the goal, or is truncated after `max_steps_in_episode - 1` = 1023 steps
    (POPGym's check). Reward: `-1 / max_steps_in_episode` every step, `+1` on the step that reaches the goal,
    so the return is `1 - steps / 1024` in `[-1, 1]`.

    Expected return: optimal `1 - d / 1024` with `d` the shortest-path length from start to goal (a BFS
    oracle achieves it, see the tests), on average 0.979 / 0.965 / 0.948 at Easy / Medium / Hard
    (measured over 1024 / 512 / 512 mazes). Uniformly random policy (measured over 1024 / 512 / 512
    episodes): -0.40 / -0.82 / -0.97 (std 0.75 / 0.49 / 0.19; most Medium and Hard episodes time out).

    Deviation: POPGym's 3x3 view is off-centre on the top and left outer walls (it pads only at the
    bottom/right), which only affects observations on an entrance cell; this one is always centred.
    """

    mark_goal = True

    @staticmethod
    def _shortest_episode(h, w):
        # The goal is on the outer wall opposite the start, 2h rows or 2w columns away; a step moves one cell.
        return 2 * min(h, w)

    def _reward(self, state, new_state, params):
        at_goal = new_state.grid[new_state.position[0], new_state.position[1]] == GOAL
        return at_goal - 1.0 / params.max_steps_in_episode, at_goal


class LabyrinthExplore(_Labyrinth):
    """Visit every cell of a random maze from a 3x3 local view (POPGym's LabyrinthExplore).

    Mazes, observations, actions and episode length as LabyrinthEscape, except that the end entrance stays
    a wall (there is no goal). Episode: ends once every free cell has been visited, or is truncated after
    1023 steps. Reward: `+1 / n_free` for a step onto a not-yet-visited cell (`n_free` the number of free
    cells besides the start), `-1 / max_steps_in_episode` for any other step, so the return is in
    `[-1, 1]`.

    Expected return: optimal `1 - (n_free - D) / 1024` with `D` the largest distance from the start (a
    depth-first tour that enters the deepest branch last, as the oracle in the tests; a perfect maze is a
    tree, so every other cell must be walked through twice), on average 0.982 / 0.958 / 0.920 at
    Easy / Medium / Hard (measured over 1024 / 512 / 512 mazes). Uniformly random policy (measured over
    1024 / 512 / 512 episodes): -0.35 / -0.62 / -0.74 (std 0.18 / 0.13 / 0.09).

    Deviation: the centred 3x3 view, as in LabyrinthEscape.
    """

    mark_goal = False

    @staticmethod
    def _shortest_episode(h, w):
        # All 2hw open cells (hw rooms, hw - 1 passages, the start) must be visited; the start is visited at
        # reset and a step visits at most one new cell.
        return 2 * h * w - 1

    def _reward(self, state, new_state, params):
        y, x = new_state.position
        n_free = jnp.sum(state.grid == FREE)
        reward = jnp.where(state.explored[y, x], -1.0 / params.max_steps_in_episode, 1.0 / n_free)
        all_seen = jnp.all(new_state.explored == (new_state.grid != OBSTACLE))
        return reward, all_seen


_LEVELS = {
    "Easy": {"maze_dims": (10, 10), "episode_length": 1024},
    "Medium": {"maze_dims": (14, 14), "episode_length": 1024},
    "Hard": {"maze_dims": (18, 18), "episode_length": 1024},
}
_ESCAPE = difficulty_registry(LabyrinthEscape, _LEVELS)
_EXPLORE = difficulty_registry(LabyrinthExplore, _LEVELS)
REGISTRY = {**_ESCAPE[0], **_EXPLORE[0]}
ALIASES = {**_ESCAPE[1], **_EXPLORE[1]}

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


@partial(jax.jit, static_argnames=("maze_dims",))
def generate_maze(key: jax.Array, maze_dims: tuple[int, int]) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Random perfect maze with two outer entrances, as ``mazelib``'s ``HuntAndKill`` + outer entrances.

    Hunt-and-kill: a random walk carves passages into unvisited blocks until it is stuck; it then restarts
    from a uniformly random visited block that still has an unvisited neighbour (mazelib's "random" hunt,
    which draws random blocks until one qualifies). Every iteration carves exactly one new block, so the
    loop has the fixed length ``h * w - 1`` and always ends with every block connected (mazelib's bounded
    number of draws leaves a block uncarved with tiny probability; this version never does).
    The start is a random odd cell of a random outer wall, the end one of the opposite wall.

    Args:
        key: PRNG key.
        maze_dims: static `(height, width)`, both even (POPGym's ``maze_dims``): `h, w = maze_dims // 2`
            blocks on a grid of `H, W = maze_dims + 1` cells.
    Returns:
        grid `[H, W]` int32 of FREE / OBSTACLE, start `[2]` and end `[2]` int32 (row, col) on opposite
        outer walls (still OBSTACLE in `grid`; the envs open them).
    """
    h, w = maze_dims[0] // 2, maze_dims[1] // 2
    n_blocks = h * w
    key_carve, key_side, key_offsets = jax.random.split(key, 3)
    uniforms = jax.random.uniform(key_carve, (n_blocks, n_blocks + 4))
    blocks = jnp.arange(n_blocks)
    first = _pick(uniforms[0, :n_blocks], blocks >= 0)

    def carve(carry, step_uniforms):
        visited, current = carry
        open_dirs = _unvisited_neighbours(visited.reshape(h, w)).reshape(n_blocks, 4) & visited[:, None]
        can_grow = open_dirs.any(-1)
        # masked reductions instead of gathers at traced indices: faster to compile and to run under vmap
        walk_on = jnp.any(can_grow & (blocks == current))
        source = jnp.where(walk_on, current, _pick(step_uniforms[:n_blocks], can_grow))
        direction = _pick(step_uniforms[n_blocks:], jnp.any(open_dirs & (blocks == source)[:, None], 0))
        source_rc = jnp.stack([source // w, source % w])
        step = jnp.asarray(MOVES)[direction]
        new_rc = source_rc + step
        new = new_rc[0] * w + new_rc[1]
        return (visited | (blocks == new), new), (2 * new_rc + 1, 2 * source_rc + 1 + step)

    _, (rooms, passages) = jax.lax.scan(carve, (blocks == first, first), uniforms[1:])
    first_room = 2 * jnp.stack([first // w, first % w]) + 1
    free = jnp.concatenate([first_room[None], rooms, passages])
    grid = jnp.full((2 * h + 1, 2 * w + 1), OBSTACLE, jnp.int32).at[free[:, 0], free[:, 1]].set(FREE)

    side = jax.random.randint(key_side, (), 0, 4)  # start on the north, south, west or east wall
    along_rows = side >= 2
    start_off, end_off = 2 * jax.random.randint(key_offsets, (2,), 0, jnp.where(along_rows, h, w)) + 1
    far_wall = jnp.where(along_rows, 2 * w, 2 * h)
    start_wall = jnp.where(side % 2 == 0, 0, far_wall)
    end_wall = far_wall - start_wall
    start = jnp.where(along_rows, jnp.stack([start_off, start_wall]), jnp.stack([start_wall, start_off]))
    end = jnp.where(along_rows, jnp.stack([end_off, end_wall]), jnp.stack([end_wall, end_off]))
    return grid, start.astype(jnp.int32), end.astype(jnp.int32)


@chex.dataclass(frozen=True)
class LabyrinthState:
    """grid `[H, W]` int32 cell codes, explored `[H, W]` bool, position `[2]` (row, col), scalars."""

    grid: jax.Array
    explored: jax.Array
    position: jax.Array
    last_action: jax.Array
    time: jax.Array


@chex.dataclass(frozen=True)
class LabyrinthParams:
    max_steps_in_episode: int = 1024


class _Labyrinth(environment.Environment):
    """Shared maze mechanics of POPGym's ``MazeEnv``; subclasses set the goal cell and the reward."""

    obs_requires_prev_action = True  # POPGym's flag; as in POPGym the observation already ends with it
    mark_goal: bool

    def __init__(self, maze_dims: tuple[int, int] = (10, 10), episode_length: int = 1024):
        super().__init__()
        if len(maze_dims) != 2 or any(check_int("maze_dims", d, 2) % 2 for d in maze_dims):
            raise ValueError(f"maze_dims must be two even integers >= 2, got {maze_dims!r}")
        self.maze_dims = (int(maze_dims[0]), int(maze_dims[1]))
        self._default_params = LabyrinthParams(max_steps_in_episode=check_int("episode_length", episode_length, 2))

    @property
    def default_params(self) -> LabyrinthParams:
        return self._default_params

    def reset_env(self, key: jax.Array, params: LabyrinthParams) -> tuple[jax.Array, LabyrinthState]:
        grid, start, end = generate_maze(key, self.maze_dims)
        grid = grid.at[start[0], start[1]].set(START)
        if self.mark_goal:
            grid = grid.at[end[0], end[1]].set(GOAL)
        state = LabyrinthState(
            grid=grid,
            explored=jnp.zeros(grid.shape, bool).at[start[0], start[1]].set(True),
            position=start,
            last_action=jnp.int32(NO_ACTION),
            time=jnp.int32(0),
        )
        return self.get_obs(state, params), state

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
        return spaces.Dict(
            {
                "grid": spaces.Box(FREE, GOAL, shape, jnp.int32),
                "explored": spaces.Box(0, 1, shape, jnp.bool_),
                "position": spaces.Box(0, max(shape) - 1, (2,), jnp.int32),
                "last_action": spaces.Discrete(len(MOVES) + 1),
                "time": spaces.Discrete(self._default_params.max_steps_in_episode),
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

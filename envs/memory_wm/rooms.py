"""Multi-room mazes: S4WM's long-term imagination suite (Two/Four/Ten Rooms) and its teleport recall variant.

Layout: `rows x cols` rooms of `room_size x room_size` free cells, separated by 1-cell walls, each pair of
neighbouring rooms joined by a doorway in the middle of their shared wall; grid side (rows|cols) *
(room_size + 1) + 1. At reset every room gets its own floor colour (distinct while the palette lasts) and
`objects_per_room` coloured, non-blocking objects at random free cells; the agent starts at a random cell.
Observation: the egocentric `view x view` window of cells around the agent (the agent drawn white at the
centre, outside the maze drawn as wall), rendered to `[image_size, image_size, 3]`. Reward: always 0.

Teleport (context-dependent recall): if `teleport_at` > 0, at that step the agent is moved back to its start
cell, so what it sees next can only be predicted by recalling the context before the teleport.

Data policy: waypoint exploration (it needs to reach every room): walk to a random cell of a random room,
through doorways (first along the row of rooms, then the column), then pick a new target; 10 % random moves.

Suites (episode lengths; the context C / imagination horizon H used in evaluation are in the configs):
  TwoRooms 1x2 rooms, 1000 steps; FourRooms 2x2, 1000 steps; TenRooms 2x5, 2000 steps;
  FourRoomsTeleport / TenRoomsTeleport: the same mazes, teleported back at step 500 / 1100.

What is the paper's (S4WM, Deng, Park, Ahn 2023; checked on its abstract and project page only): the suite
names and their tests (long-term imagination; context-dependent recall after a teleport), rooms that differ by
colour and hold objects to remember ("struggling to memorize the objects and wall colors"), 500-step
imagination in Four Rooms, sequences of up to 2000 steps. Ours, not checked against the paper's body: the
room size and count of objects, episode lengths other than the 2000-step maximum, the teleport steps, C and
H other than Four Rooms' H = 500, the data policy.
Simplification: the paper renders first-person 3D views with coloured walls; here the view is an egocentric
top-down window of cells and each room's floor carries its colour (a grid wall cell is shared by two rooms).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.memory_wm.grid import (
    AGENT,
    FLOOR,
    MOVES,
    NUM_COLOURS,
    NUM_FIXED,
    WALL,
    GridMemoryEnv,
    GridParams,
    check_int,
    random_cells,
    render,
    window,
)


@chex.dataclass(frozen=True)
class RoomsState:
    """cells `[h, w]` colour index of every cell (walls, room floors, objects); free `[h, w]` bool walkable;
    pos, start, target `[2]` int32 agent, start and data-policy target cells; time: steps taken."""

    cells: jax.Array
    free: jax.Array
    pos: jax.Array
    start: jax.Array
    target: jax.Array
    time: jax.Array


class Rooms(GridMemoryEnv):
    """A `rows x cols` maze of rooms (see the module docstring)."""

    def __init__(self, rows: int = 2, cols: int = 2, room_size: int = 5, objects_per_room: int = 2, view: int = 5,
                 image_size: int = 64, max_steps: int = 1000, teleport_at: int = 0):
        super().__init__()
        self.rows, self.cols = check_int("rows", rows, 1), check_int("cols", cols, 1)
        self.room_size = check_int("room_size", room_size, 3)
        self.objects_per_room = check_int("objects_per_room", objects_per_room, 0)
        if self.objects_per_room >= room_size * room_size:
            raise ValueError(f"objects_per_room must be < room_size^2 = {room_size**2}, got {objects_per_room}")
        self.view = check_int("view", view, 1)
        if self.view % 2 == 0:
            raise ValueError(f"view must be odd (the agent sits at the centre), got {view}")
        self.teleport_at = check_int("teleport_at", teleport_at, 0)
        self._set_sizes(image_size, max_steps)
        self.pitch = self.room_size + 1
        self.shape = (self.rows * self.pitch + 1, self.cols * self.pitch + 1)

    def layout(self):
        """Walkable cells `[h, w]` bool and room index of every cell `[h, w]` (-1 on walls and doorways)."""
        r, c = jnp.arange(self.shape[0])[:, None], jnp.arange(self.shape[1])[None, :]
        on_row_wall, on_col_wall = r % self.pitch == 0, c % self.pitch == 0
        inside = ~on_row_wall & ~on_col_wall
        mid = self.pitch // 2
        inner_r, inner_c = (r > 0) & (r < self.shape[0] - 1), (c > 0) & (c < self.shape[1] - 1)
        door = (on_col_wall & ~on_row_wall & inner_c & (r % self.pitch == mid)) | (
            on_row_wall & ~on_col_wall & inner_r & (c % self.pitch == mid)
        )
        room = jnp.where(inside, (r // self.pitch) * self.cols + c // self.pitch, -1)
        return inside | door, room

    def reset_env(self, key, params: GridParams):
        k_colour, k_obj, k_start, k_target = jax.random.split(key, 4)
        free, room = self.layout()
        n_rooms = self.rows * self.cols
        colours = jax.random.permutation(k_colour, jnp.arange(n_rooms) % NUM_COLOURS)
        cells = jnp.where(free, FLOOR, WALL)
        cells = jnp.where(room >= 0, NUM_FIXED + colours[jnp.maximum(room, 0)], cells)
        if self.objects_per_room:
            k_pos, k_col = jax.random.split(k_obj)
            place = lambda k, index: random_cells(k, room == index, self.objects_per_room)
            where = jax.vmap(place)(jax.random.split(k_pos, n_rooms), jnp.arange(n_rooms)).reshape(-1, 2)
            obj_colour = NUM_FIXED + jax.random.randint(k_col, (len(where),), 0, NUM_COLOURS)
            cells = cells.at[where[:, 0], where[:, 1]].set(obj_colour)
        start = random_cells(k_start, room >= 0, 1)[0]
        target = random_cells(k_target, room >= 0, 1)[0]
        state = RoomsState(cells=cells, free=free, pos=start, start=start, target=target, time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(self, key, state: RoomsState, action, params: GridParams):
        moved = state.pos + MOVES[action]
        pos = jnp.where(state.free[moved[0], moved[1]], moved, state.pos)
        time = state.time + 1
        if self.teleport_at:
            pos = jnp.where(time == self.teleport_at, state.start, pos)
        _, room = self.layout()
        new_target = random_cells(key, room >= 0, 1)[0]
        target = jnp.where(jnp.all(pos == state.target), new_target, state.target)
        state = state.replace(pos=pos, target=target, time=time)
        return self.get_obs(state), state, jnp.float32(0.0), jnp.bool_(False), {}

    def get_obs(self, state: RoomsState, params=None, key=None):
        """Egocentric view `[image_size, image_size, 3]` float32."""
        view = window(state.cells, state.pos, self.view).at[self.view // 2, self.view // 2].set(AGENT)
        return render(view, self.image_size)

    def data_policy(self, key, state: RoomsState, params: GridParams):
        """Waypoint exploration towards `state.target` through doorways, 10 % random moves."""
        k_eps, k_rand = jax.random.split(key)
        mid = self.pitch // 2
        room_rc = (state.pos - 1) // self.pitch
        target_rc = (state.target - 1) // self.pitch
        # Waypoint: the doorway towards the target's column of rooms, else row of rooms, else the target itself.
        go_col = room_rc[1] != target_rc[1]
        go_row = ~go_col & (room_rc[0] != target_rc[0])
        step_c = jnp.sign(target_rc[1] - room_rc[1])
        step_r = jnp.sign(target_rc[0] - room_rc[0])
        door_c = jnp.stack([room_rc[0] * self.pitch + mid, (room_rc[1] + (step_c > 0)) * self.pitch])
        door_r = jnp.stack([(room_rc[0] + (step_r > 0)) * self.pitch, room_rc[1] * self.pitch + mid])
        # Through the doorway: once on its row (column), keep moving along the row (column) of rooms.
        waypoint = jnp.where(go_col, door_c + jnp.array([0, 1]) * step_c, state.target)
        waypoint = jnp.where(go_row, door_r + jnp.array([1, 0]) * step_r, waypoint)
        delta = waypoint - state.pos
        vertical = jnp.where(delta[0] < 0, 0, 1)
        horizontal = jnp.where(delta[1] < 0, 2, 3)
        # Travel along a row of rooms lines up with the doorway's row first, along a column its column first;
        # standing in a doorway, keep going through it.
        first_vertical = jnp.where(go_row, delta[1] == 0, delta[0] != 0)
        action = jnp.where(first_vertical, vertical, horizontal)
        action = jnp.where(state.pos[0] % self.pitch == 0, vertical, action)
        action = jnp.where(state.pos[1] % self.pitch == 0, horizontal, action)
        random = jax.random.randint(k_rand, (), 0, 4)
        return jnp.where(jax.random.uniform(k_eps) < 0.1, random, action).astype(jnp.int32)


ROOMS_SUITES = {
    "TwoRooms": dict(rows=1, cols=2, max_steps=1000),
    "FourRooms": dict(rows=2, cols=2, max_steps=1000),
    "TenRooms": dict(rows=2, cols=5, max_steps=2000),
    "FourRoomsTeleport": dict(rows=2, cols=2, max_steps=1000, teleport_at=500),
    "TenRoomsTeleport": dict(rows=2, cols=5, max_steps=2000, teleport_at=1100),
}

"""Multi Doors Keys: the memory-based reasoning suite (keys held are not shown; doors open only with one).

An `arena x arena` room (walls around) holds `num_colours` key colours with `keys_per_colour` keys each and
one locked door per colour, all at random cells. Stepping onto a key picks it up (it disappears; the count
of keys held is not drawn anywhere). Moving into a door: if the agent holds a key of the door's colour,
one such key is used up, the door opens for good (its cell becomes floor, the agent moves in) and the
reward is +1; otherwise the door blocks and the reward is 0. Predicting whether a door opens therefore
needs the memory of which keys were picked up and used.
Observation: the whole arena top-down (agent white, keys squares of their colour, closed doors squares of
their colour with a dark centre pixel-cell), `[image_size, image_size, 3]` via a grid of 3x3 sub-cells a cell.
Episode: 500 steps. Data policy: uniformly random moves.

What is the paper's (S4WM, Deng, Park, Ahn 2023; checked on its project page only): the suite name, keys that
are picked up and used up by doors, the model having to keep that count in memory to predict future door
states, scored by generation MSE, with settings of up to "many keys" (`keys_per_colour` here). Ours, not
checked against the paper's body: the layout, colours, key and door counts, the 500-step episodes, C = H = 250
and the rendering. The reward (+1 per opened door) is ours too: the paper scores this suite by MSE.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.memory_wm.grid import (
    AGENT,
    EMPTY,
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
)


@chex.dataclass(frozen=True)
class MultiDoorsKeysState:
    """keys `[K, 2]` cells (K = num_colours * keys_per_colour; key k has colour k // keys_per_colour);
    key_present `[K]` bool; doors `[num_colours, 2]` cells; door_closed `[num_colours]` bool; held
    `[num_colours]` int32 keys held per colour; pos `[2]`; time."""

    keys: jax.Array
    key_present: jax.Array
    doors: jax.Array
    door_closed: jax.Array
    held: jax.Array
    pos: jax.Array
    time: jax.Array


class MultiDoorsKeys(GridMemoryEnv):
    """See the module docstring."""

    def __init__(self, arena: int = 7, num_colours: int = 3, keys_per_colour: int = 1, image_size: int = 64,
                 max_steps: int = 500):
        super().__init__()
        self.arena = check_int("arena", arena, 3)
        self.num_colours = check_int("num_colours", num_colours, 1)
        self.keys_per_colour = check_int("keys_per_colour", keys_per_colour, 1)
        if self.num_colours > NUM_COLOURS:
            raise ValueError(f"num_colours must be <= {NUM_COLOURS}, got {num_colours}")
        if self.num_colours * (self.keys_per_colour + 1) + 1 > self.arena**2:
            raise ValueError(f"{num_colours} colours x ({keys_per_colour} keys + 1 door) + agent exceed {arena}^2")
        self._set_sizes(image_size, max_steps)
        self.side = self.arena + 2
        self.key_colour = jnp.arange(self.num_colours * self.keys_per_colour) // self.keys_per_colour

    def _interior(self):
        r, c = jnp.arange(self.side)[:, None], jnp.arange(self.side)[None, :]
        return (r > 0) & (r < self.side - 1) & (c > 0) & (c < self.side - 1)

    def reset_env(self, key, params: GridParams):
        n_keys = self.num_colours * self.keys_per_colour
        cells = random_cells(key, self._interior(), n_keys + self.num_colours + 1)
        state = MultiDoorsKeysState(
            keys=cells[:n_keys], key_present=jnp.ones(n_keys, bool), doors=cells[n_keys:-1],
            door_closed=jnp.ones(self.num_colours, bool), held=jnp.zeros(self.num_colours, jnp.int32),
            pos=cells[-1], time=jnp.int32(0),
        )
        return self.get_obs(state), state

    def step_env(self, key, state: MultiDoorsKeysState, action, params: GridParams):
        moved = state.pos + MOVES[action]
        at_door = jnp.all(state.doors == moved, -1) & state.door_closed  # [num_colours]
        opens = at_door & (state.held > 0)
        blocked = ~self._interior()[moved[0], moved[1]] | jnp.any(at_door & ~opens)
        pos = jnp.where(blocked, state.pos, moved)
        held = state.held - opens.astype(jnp.int32)
        picked = jnp.all(state.keys == pos, -1) & state.key_present
        held = held + jnp.zeros_like(held).at[self.key_colour].add(picked.astype(jnp.int32))
        state = state.replace(
            pos=pos, held=held, key_present=state.key_present & ~picked, door_closed=state.door_closed & ~opens,
            time=state.time + 1,
        )
        return self.get_obs(state), state, jnp.any(opens).astype(jnp.float32), jnp.bool_(False), {}

    def get_obs(self, state: MultiDoorsKeysState, params=None, key=None):
        """Top-down arena, 3x3 sub-cells a cell (closed doors have a dark centre): `[S, S, 3]` float32."""
        colours = NUM_FIXED + jnp.arange(self.num_colours)
        cells = jnp.where(self._interior(), FLOOR, WALL)
        hidden = jnp.array([0, 0])  # absent keys / open doors are drawn on the wall corner, which stays wall
        keys = jnp.where(state.key_present[:, None], state.keys, hidden)
        doors = jnp.where(state.door_closed[:, None], state.doors, hidden)
        cells = cells.at[keys[:, 0], keys[:, 1]].set(jnp.where(state.key_present, colours[self.key_colour], WALL))
        cells = cells.at[doors[:, 0], doors[:, 1]].set(jnp.where(state.door_closed, colours, WALL))
        cells = cells.at[state.pos[0], state.pos[1]].set(AGENT)
        fine = jnp.repeat(jnp.repeat(cells, 3, 0), 3, 1)
        centres = jnp.where(state.door_closed[:, None], 3 * state.doors + 1, jnp.array([1, 1]))
        fine = fine.at[centres[:, 0], centres[:, 1]].set(jnp.where(state.door_closed, EMPTY, WALL))
        return render(fine, self.image_size)

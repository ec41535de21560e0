"""What the memory world-model suites share: grid moves, the colour palette, rendering, params and the base env.

Every suite is a 2D grid world with 4 actions (0 up, 1 down, 2 left, 3 right; a move into a blocking cell
leaves the agent in place), rendered as an RGB float32 image `[S, S, 3]` in [0, 1] of a window of cells, each cell a
flat colour upscaled by nearest neighbour. Episodes last `max_steps_in_episode` steps (no other ending).
Each env also has `data_policy(key, state, params) -> action`, the behaviour policy of its datasets.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment, spaces

MOVES = jnp.array([[-1, 0], [1, 0], [0, -1], [0, 1]], jnp.int32)  # (row, col) deltas of actions 0..3

# Colour indices into PALETTE: fixed roles first, then the colours that rooms, goals, keys and doors draw from.
EMPTY, WALL, AGENT, FLOOR = 0, 1, 2, 3
NUM_FIXED = 4
PALETTE = np.array(
    [
        [0, 0, 0], [110, 110, 110], [255, 255, 255], [40, 40, 40],
        [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
        [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40],
    ],
    np.uint8,
)
NUM_COLOURS = len(PALETTE) - NUM_FIXED


@chex.dataclass(frozen=True)
class GridParams:
    """Runtime params of every suite: the episode length."""

    max_steps_in_episode: int


def check_int(name: str, value, minimum: int) -> int:
    """`value` as an int >= `minimum`, else ValueError naming it."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def render(cells, image_size: int):
    """Colour indices `[h, w]` -> RGB float32 image `[image_size, image_size, 3]` in [0, 1] (nearest-neighbour)."""
    rows = jnp.arange(image_size) * cells.shape[0] // image_size
    cols = jnp.arange(image_size) * cells.shape[1] // image_size
    return jnp.asarray(PALETTE, jnp.float32)[cells[rows][:, cols]] / 255.0


def window(cells, centre, size: int, fill: int = WALL):
    """The `[size, size]` window of `cells` centred on `centre` (row, col); outside the grid reads `fill`."""
    half = size // 2
    padded = jnp.pad(cells, half, constant_values=fill)
    return jax.lax.dynamic_slice(padded, (centre[0], centre[1]), (size, size))


def random_cells(key, free, count: int):
    """`count` distinct cells `[count, 2]` drawn uniformly among the True cells of `free` `[h, w]`."""
    flat = jax.random.choice(key, free.size, (count,), replace=False, p=free.ravel() / jnp.sum(free))
    return jnp.stack(jnp.divmod(flat, free.shape[1]), -1).astype(jnp.int32)


class GridMemoryEnv(environment.Environment):
    """Base of the suites: 4 moves, image observations `[S, S, 3]` float32 in [0, 1], a fixed episode length.

    Subclasses call `_set_sizes` in `__init__` and implement `reset_env`, `step_env` (terminated is always
    False), `get_obs` and possibly `data_policy`. gymnax's `step` truncates at `time >= max_steps_in_episode`
    (states keep a `time` field).
    """

    def _set_sizes(self, image_size: int, max_steps: int) -> None:
        self.image_size = check_int("image_size", image_size, 4)
        self._max_steps = check_int("max_steps", max_steps, 1)

    @property
    def default_params(self) -> GridParams:
        return GridParams(max_steps_in_episode=self._max_steps)

    @property
    def num_actions(self) -> int:
        return 4

    def action_space(self, params: GridParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(4)

    def observation_space(self, params: GridParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.image_size, self.image_size, 3), jnp.float32)

    def is_terminated(self, state, params: GridParams) -> jax.Array:
        return jnp.bool_(False)

    def data_policy(self, key, state, params: GridParams) -> jax.Array:
        """Default behaviour policy: a uniformly random move."""
        return jax.random.randint(key, (), 0, 4)

"""POPGym's Battleship: sink hidden ships by firing at cells, told only hit or miss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ssmrl.envs.popgym.cards import GameParams, PopGymGame, check_int, difficulty_registry


@chex.dataclass(frozen=True)
class BattleshipState:
    """ships, guesses `[B * B]` bool (row-major board); hits: ship cells hit; time: steps taken."""

    ships: jax.Array
    guesses: jax.Array
    hits: jax.Array
    time: jax.Array


def placement_masks(board_size: int, ship_size: int) -> np.ndarray:
    """Cells covered by every in-bounds straight placement of a ship: bool `[P, B * B]`."""
    masks = []
    for length_rows, length_cols in ((1, ship_size), (ship_size, 1)):  # horizontal, vertical
        for row in range(board_size - length_rows + 1):
            for col in range(board_size - length_cols + 1):
                board = np.zeros((board_size, board_size), bool)
                board[row : row + length_rows, col : col + length_cols] = True
                masks.append(board.reshape(-1))
    return np.stack(masks)


class Battleship(PopGymGame):
    """Ships of ``ship_sizes`` cells lie hidden, straight and non-overlapping, on a B x B board.

    Ships are placed one after another, each uniformly among the placements that fit (POPGym's
    rejection sampling gives the same distribution). Observation `[1]`: 1.0 if the last shot hit a
    ship cell not hit before, else 0.0 (also at reset). Action: ``Discrete(B * B)``, the cell
    ``row * B + col`` to fire at (POPGym's ``MultiDiscrete([B, B])`` flattened, as its
    ``DiscreteAction`` wrapper does).
    Reward: +1/H for a new hit, H = sum(ship_sizes) = 12; -1/(B*B - H) for anything else (a miss or
    a repeated shot), so an all-hits episode returns 1 and firing at every cell once returns 0.
    Episode: terminates when all H ship cells are hit, truncated after B*B steps: Easy B=8 (64),
    Medium B=10 (100), Hard B=12 (144); ships [2, 3, 3, 4] at every level.
    Returns: clairvoyant policy that knows the ships, analytic: 1.0 (the upper bound; no policy
    with memory alone can always reach it); uniformly random policy, measured over 12288
    episodes: Easy -0.449, Medium -0.414, Hard -0.397.
    """

    obs_requires_prev_action = True

    def __init__(self, board_size: int = 10, ship_sizes: tuple[int, ...] = (2, 3, 3, 4)):
        super().__init__()
        self.board_size = check_int("board_size", board_size, 1)
        self.ship_sizes = tuple(check_int("ship size", size, 1) for size in ship_sizes)
        cells = self.board_size**2
        self.needed_hits = sum(self.ship_sizes)
        if not self.ship_sizes or max(self.ship_sizes) > self.board_size or self.needed_hits > cells // 2:
            raise ValueError(
                f"ship_sizes {ship_sizes!r} must be non-empty, each fit a {board_size}-cell row and cover at "
                f"most half of the {cells} cells"
            )
        self._masks = {size: placement_masks(self.board_size, size) for size in set(self.ship_sizes)}
        self._set_sizes(obs_dim=1, num_actions=cells, max_steps=cells)

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, BattleshipState]:
        cells = self.board_size**2
        ships = jnp.zeros(cells, bool)
        for ship_key, size in zip(jax.random.split(key, len(self.ship_sizes)), self.ship_sizes, strict=True):
            masks = jnp.asarray(self._masks[size])
            fits = ~(masks & ships).any(-1)
            ships = ships | masks[jax.random.categorical(ship_key, jnp.where(fits, 0.0, -jnp.inf))]
        state = BattleshipState(
            ships=ships, guesses=jnp.zeros(cells, bool), hits=jnp.int32(0), time=jnp.int32(0)
        )
        return jnp.zeros(1, jnp.float32), state

    def step_env(
        self, key: jax.Array, state: BattleshipState, action: jax.Array, params: GameParams
    ) -> tuple[jax.Array, BattleshipState, jax.Array, jax.Array, dict]:
        hit = state.ships[action] & ~state.guesses[action]
        miss_reward = -1.0 / (self.board_size**2 - self.needed_hits)
        reward = jnp.where(hit, 1.0 / self.needed_hits, miss_reward).astype(jnp.float32)
        state = state.replace(
            guesses=state.guesses.at[action].set(True), hits=state.hits + hit, time=state.time + 1
        )
        return hit.astype(jnp.float32)[None], state, reward, state.hits >= self.needed_hits, {}


REGISTRY, ALIASES = difficulty_registry(
    Battleship,
    {
        "Easy": {"board_size": 8, "ship_sizes": (2, 3, 3, 4)},
        "Medium": {"board_size": 10, "ship_sizes": (2, 3, 3, 4)},
        "Hard": {"board_size": 12, "ship_sizes": (2, 3, 3, 4)},
    },
)

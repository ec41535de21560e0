"""POPGym's MineSweeper: clear a hidden minefield, told only the mine count around each clicked cell."""

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.popgym.cards import GameParams, PopGymGame, check_int, difficulty_registry, one_hot


@chex.dataclass(frozen=True)
class MineSweeperState:
    """mines, viewed `[H * W]` bool (row-major); counts `[H * W]` int32 mines in each 3x3 block;
    time: steps taken."""

    mines: jax.Array
    viewed: jax.Array
    counts: jax.Array
    time: jax.Array


def mine_counts(mines: jax.Array) -> jax.Array:
    """`[H, W]` bool -> int32 `[H, W]`: mines in the 3x3 block centred on each cell (centre included)."""
    height, width = mines.shape
    padded = jnp.pad(mines.astype(jnp.int32), 1)
    return sum(padded[dr : dr + height, dc : dc + width] for dr in range(3) for dc in range(3))


class MineSweeper(PopGymGame):
    """``num_mines`` mines hide under a ``height x width`` grid; every free cell must be clicked.

    Observation `[min(num_mines + 1, 10)]`: one-hot number of mines in the 3x3 block around the
    last clicked cell (for a mine, itself included, as in POPGym); all zeros at reset (POPGym
    shows 0). Action: ``Discrete(H * W)``, the cell ``row * W + col`` (POPGym's
    ``MultiDiscrete([H, W])`` flattened, as its ``DiscreteAction`` wrapper does).
    Reward, with F = H*W - num_mines free cells: +1/F for a new free cell; -0.5/(F-2) for clicking
    a cell already cleared; -0.5 - 1/F for a mine, which ends the episode.
    Episode: terminates on a mine or when every free cell is clear, truncated after F steps (as in
    popgym 1.0.7, which increments its step counter before comparing it with F): Easy 4x4 with 2 mines
    (F=14), Medium 6x6 with 6 mines (F=30), Hard 8x8 with 10 mines (F=54).
    Returns: clairvoyant policy that knows the mines, analytic: 1.0 (the upper bound; no policy
    with memory alone can always reach it); uniformly random policy, measured over 12288
    episodes: Easy -0.243, Medium -0.401, Hard -0.433.
    """

    obs_requires_prev_action = True

    def __init__(self, height: int = 4, width: int = 4, num_mines: int = 2):
        super().__init__()
        self.height = check_int("height", height, 1)
        self.width = check_int("width", width, 1)
        self.num_mines = check_int("num_mines", num_mines, 1)
        self.num_free = self.height * self.width - self.num_mines
        if self.num_free < 3:
            raise ValueError(
                f"num_mines={num_mines} must leave at least 3 free cells on a {height}x{width} grid"
            )
        self._set_sizes(
            obs_dim=min(self.num_mines + 1, 10), num_actions=self.height * self.width, max_steps=self.num_free
        )

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, MineSweeperState]:
        cells = self.height * self.width
        mine_cells = jax.random.permutation(key, cells)[: self.num_mines]
        mines = jnp.zeros(cells, bool).at[mine_cells].set(True)
        state = MineSweeperState(
            mines=mines,
            viewed=jnp.zeros(cells, bool),
            counts=mine_counts(mines.reshape(self.height, self.width)).reshape(-1),
            time=jnp.int32(0),
        )
        return jnp.zeros(self.obs_dim, jnp.float32), state

    def step_env(
        self, key: jax.Array, state: MineSweeperState, action: jax.Array, params: GameParams
    ) -> tuple[jax.Array, MineSweeperState, jax.Array, jax.Array, dict]:
        success = 1.0 / self.num_free
        mine, seen = state.mines[action], state.viewed[action]
        reward = jnp.where(seen, -0.5 / (self.num_free - 2), success)
        reward = jnp.where(mine, -0.5 - success, reward).astype(jnp.float32)
        viewed = state.viewed.at[action].set(seen | ~mine)
        terminated = mine | (viewed | state.mines).all()
        state = state.replace(viewed=viewed, time=state.time + 1)
        return one_hot(state.counts[action], self.obs_dim), state, reward, terminated, {}


REGISTRY, ALIASES = difficulty_registry(
    MineSweeper,
    {
        "Easy": {"height": 4, "width": 4, "num_mines": 2},
        "Medium": {"height": 6, "width": 6, "num_mines": 6},
        "Hard": {"height": 8, "width": 8, "num_mines": 10},
    },
    port_name="Minesweeper",
)

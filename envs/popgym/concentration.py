"""POPGym's Concentration: the memory card game of flipping pairs of face-down cards."""

import math

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.popgym.cards import (
    FEATURE_SIZES,
    GameParams,
    PopGymGame,
    check_feature,
    difficulty_registry,
    one_hot,
    shuffled_deck,
)


@chex.dataclass(frozen=True)
class ConcentrationState:
    """cards `[N]` int32 values; face_up `[N]` bool (matched); first: index of the card turned this turn
    or -1; time: steps taken."""

    cards: jax.Array
    face_up: jax.Array
    first: jax.Array
    time: jax.Array


class Concentration(PopGymGame):
    """N = 52 * num_decks shuffled cards lie face down; each step turns one card, two make a turn.

    Two cards match when their ``feature`` (colors or ranks; suits are excluded because 13 cards per
    suit cannot all be paired) is equal. A matched pair stays face up; otherwise both are turned
    back down after the observation that shows them.
    Observation `[N * (V + 1)]`: per position, one-hot of the card's value (V = 2 colors or 13 ranks)
    if it is face up or turned this turn, else of the extra "face down" value. Action:
    ``Discrete(N)``, the position to turn.
    Reward: +1/(N/2) per matched pair; -1/L per card of a turn that fails: -2/L for a non-matching
    pair (or turning the same card twice), -1/L or -2/L (cards in the turn) for turning a matched
    card, which also ends the turn. L = ceil(2N - N/(2N-1)) is POPGym's episode length, so
    returns lie in [-1, 1].
    Episode: terminates when every pair is matched, truncated after L steps: Easy 1 deck, colors
    (L=104); Medium 2 decks, colors (L=208); Hard 1 deck, ranks (L=104).
    Returns: clairvoyant policy that knows every card, analytic: 1.0 (the upper bound; no policy
    with memory alone can always reach it); uniformly random policy, measured over 12288 episodes:
    Easy -0.192, Medium -0.186, Hard -0.835.
    """

    obs_requires_prev_action = True

    def __init__(self, num_decks: int = 1, feature: str = "colors"):
        super().__init__()
        self._set_deck(num_decks, check_feature(feature, ("colors", "ranks")))
        self.num_values = FEATURE_SIZES[feature]
        n = self.num_cards
        self.episode_length = math.ceil(2 * n - n / (2 * n - 1))
        self._set_sizes(
            obs_dim=n * (self.num_values + 1), num_actions=n, max_steps=self.episode_length
        )

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, ConcentrationState]:
        state = ConcentrationState(
            cards=shuffled_deck(key, self.num_decks, self.feature),
            face_up=jnp.zeros(self.num_cards, bool),
            first=jnp.int32(-1),
            time=jnp.int32(0),
        )
        return self._obs(state.cards, state.face_up), state

    def step_env(
        self, key: jax.Array, state: ConcentrationState, action: jax.Array, params: GameParams
    ) -> tuple[jax.Array, ConcentrationState, jax.Array, jax.Array, dict]:
        success, failure = 1.0 / (self.num_cards // 2), -1.0 / self.episode_length
        positions = jnp.arange(self.num_cards)
        has_first = state.first >= 0
        in_turn = (positions == action) | (positions == state.first)
        obs = self._obs(state.cards, state.face_up | in_turn)

        already_up = state.face_up[action]
        second = ~already_up & has_first
        first = jnp.maximum(state.first, 0)
        match = second & (state.cards[first] == state.cards[action]) & (state.first != action)
        reward = jnp.where(second, jnp.where(match, success, 2 * failure), 0.0)
        reward = jnp.where(already_up, failure * (1 + has_first), reward).astype(jnp.float32)
        face_up = state.face_up | (match & in_turn)
        state = state.replace(
            face_up=face_up,
            first=jnp.where(already_up | second, -1, action).astype(jnp.int32),
            time=state.time + 1,
        )
        return obs, state, reward, face_up.all(), {}

    def _obs(self, cards: jax.Array, visible: jax.Array) -> jax.Array:
        """Visible card values, hidden ones as the extra value V: one-hot, flat `[N * (V + 1)]`."""
        return one_hot(jnp.where(visible, cards, self.num_values), self.num_values + 1).reshape(-1)


REGISTRY, ALIASES = difficulty_registry(
    Concentration,
    {
        "Easy": {"num_decks": 1, "feature": "colors"},
        "Medium": {"num_decks": 2, "feature": "colors"},
        "Hard": {"num_decks": 1, "feature": "ranks"},
    },
)

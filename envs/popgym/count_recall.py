"""POPGym's CountRecall: count how often each kind of card has been dealt so far."""

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.popgym.cards import (
    FEATURE_SIZES,
    GameParams,
    PopGymGame,
    deck_counts,
    difficulty_registry,
    draw,
    one_hot,
)


@chex.dataclass(frozen=True)
class CountRecallState:
    """value, query: the cards on show; values_left, queries_left `[D]` undealt cards per kind of the
    two decks (so value cards dealt = M - values_left); time: steps taken."""

    value: jax.Array
    query: jax.Array
    values_left: jax.Array
    queries_left: jax.Array
    time: jax.Array


class CountRecall(PopGymGame):
    """Two independently shuffled decks (N = 52 * num_decks cards each) are dealt side by side.

    Each step shows a value card and a query card by their ``feature`` (colors D=2, suits D=4,
    ranks D=13). Observation `[2D]`: one-hot value, one-hot query. Action: ``Discrete(M + 1)``,
    M = N / D, as in popgym 1.0.7; after seeing query card t the agent must name how many value cards
    of the query's kind were dealt among cards 0..t (0..M). POPGym's ``error_clamp`` argument is unused
    there and omitted here.
    Reward: +1/(N-1) if right, -1/(N-1) if wrong, so returns lie in [-1, 1].
    Episode: terminates after N-1 steps: Easy 1 deck, colors (51 steps, M=26); Medium 2 decks,
    suits (103 steps, M=26); Hard 4 decks, ranks (207 steps, M=16).
    Returns: optimal policy (the exact count), analytic: 1.0; uniformly random policy, analytic:
    2 / (M + 1) - 1 = Easy -0.926, Medium -0.926, Hard -0.882.
    """

    def __init__(self, num_decks: int = 1, feature: str = "colors"):
        super().__init__()
        self._set_deck(num_decks, feature)
        self.num_kinds = FEATURE_SIZES[feature]
        self.max_count = self.num_cards // self.num_kinds
        self._set_sizes(obs_dim=2 * self.num_kinds, num_actions=self.max_count + 1, max_steps=self.num_cards - 1)

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, CountRecallState]:
        key_value, key_query = jax.random.split(key)
        full = deck_counts(self.num_decks, self.feature)
        value, values_left = draw(key_value, full)
        query, queries_left = draw(key_query, full)
        state = CountRecallState(
            value=value, query=query, values_left=values_left, queries_left=queries_left, time=jnp.int32(0)
        )
        return self.get_obs(state), state

    def step_env(
        self, key: jax.Array, state: CountRecallState, action: jax.Array, params: GameParams
    ) -> tuple[jax.Array, CountRecallState, jax.Array, jax.Array, dict]:
        scale = 1.0 / (self.num_cards - 1)
        answer = self.max_count - state.values_left[state.query]
        reward = jnp.where(action == answer, scale, -scale).astype(jnp.float32)
        key_value, key_query = jax.random.split(key)
        value, values_left = draw(key_value, state.values_left)
        query, queries_left = draw(key_query, state.queries_left)
        state = state.replace(
            value=value, query=query, values_left=values_left, queries_left=queries_left, time=state.time + 1
        )
        return self.get_obs(state), state, reward, state.time >= self.num_cards - 1, {}

    def get_obs(self, state: CountRecallState, params=None, key=None) -> jax.Array:
        """[one-hot value card, one-hot query card]: `[2D]`."""
        return jnp.concatenate([one_hot(state.value, self.num_kinds), one_hot(state.query, self.num_kinds)])


REGISTRY, ALIASES = difficulty_registry(
    CountRecall,
    {
        "Easy": {"num_decks": 1, "feature": "colors"},
        "Medium": {"num_decks": 2, "feature": "suits"},
        "Hard": {"num_decks": 4, "feature": "ranks"},
    },
)

"""POPGym's RepeatFirst: keep answering the suit of the first card of the episode."""

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.popgym.cards import GameParams, PopGymGame, deck_counts, difficulty_registry, draw, one_hot


@chex.dataclass(frozen=True)
class RepeatFirstState:
    """first, card: suits of the first card and of the card on show; remaining `[4]` undealt cards per
    suit; time: steps taken."""

    first: jax.Array
    card: jax.Array
    remaining: jax.Array
    time: jax.Array


class RepeatFirst(PopGymGame):
    """Cards of ``num_decks`` shuffled decks (N = 52 * num_decks) are shown one per step.

    Observation: one-hot suit of the card on show, `[4]` (the first card at reset). Action:
    ``Discrete(4)``, a suit; each step the agent must name the suit of the *first* card.
    Reward: +1/(N-1) if right, -1/(N-1) if wrong, so returns lie in [-1, 1].
    Episode: terminates after N-1 steps, when the deck is used up: Easy 1 deck (51 steps),
    Medium 8 decks (415 steps), Hard 16 decks (831 steps).
    Returns (analytic): optimal policy 1.0; uniformly random policy -0.5.
    """

    def __init__(self, num_decks: int = 1):
        super().__init__()
        self._set_deck(num_decks, "suits")
        self._set_sizes(obs_dim=4, num_actions=4, max_steps=self.num_cards - 1)

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, RepeatFirstState]:
        first, remaining = draw(key, deck_counts(self.num_decks, self.feature))
        state = RepeatFirstState(first=first, card=first, remaining=remaining, time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(
        self, key: jax.Array, state: RepeatFirstState, action: jax.Array, params: GameParams
    ) -> tuple[jax.Array, RepeatFirstState, jax.Array, jax.Array, dict]:
        scale = 1.0 / (self.num_cards - 1)
        reward = jnp.where(action == state.first, scale, -scale).astype(jnp.float32)
        card, remaining = draw(key, state.remaining)
        state = state.replace(card=card, remaining=remaining, time=state.time + 1)
        return self.get_obs(state), state, reward, state.time >= self.num_cards - 1, {}

    def get_obs(self, state: RepeatFirstState, params=None, key=None) -> jax.Array:
        """One-hot suit of the card on show: `[4]`."""
        return one_hot(state.card, 4)


REGISTRY, ALIASES = difficulty_registry(
    RepeatFirst, {"Easy": {"num_decks": 1}, "Medium": {"num_decks": 8}, "Hard": {"num_decks": 16}}
)

"""POPGym's HigherLower: guess whether the next card's rank is higher or lower than the current one."""

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.popgym.cards import GameParams, PopGymGame, deck_counts, difficulty_registry, draw, one_hot


@chex.dataclass(frozen=True)
class HigherLowerState:
    """card: rank on show; remaining `[13]` undealt cards per rank; time: steps taken."""

    card: jax.Array
    remaining: jax.Array
    time: jax.Array


class HigherLower(PopGymGame):
    """Cards of ``num_decks`` shuffled decks (N = 52 * num_decks) are dealt one per step.

    Observation: one-hot rank of the card on show (ace low), `[13]`. Action: ``Discrete(2)``,
    0 = the next card is higher, 1 = lower. Memory helps by counting the cards already dealt.
    Reward: +1/N if right, -1/N if wrong, 0 if the next rank is equal (POPGym scales by N, not by
    the N-1 guesses, so returns lie in (-1, 1)).
    Episode: terminates after N-1 steps: Easy 1 deck (51 steps), Medium 2 decks (103 steps),
    Hard 3 decks (155 steps).
    Returns: optimal policy (card counting: guess the likelier direction given the cards not yet
    dealt), measured over 12288 episodes: Easy 0.526, Medium 0.516, Hard 0.511; uniformly random
    policy, analytic: 0.0.
    """

    def __init__(self, num_decks: int = 1):
        super().__init__()
        self._set_deck(num_decks, "ranks")
        self._set_sizes(obs_dim=13, num_actions=2, max_steps=self.num_cards - 1)

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, HigherLowerState]:
        card, remaining = draw(key, deck_counts(self.num_decks, self.feature))
        state = HigherLowerState(card=card, remaining=remaining, time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(
        self, key: jax.Array, state: HigherLowerState, action: jax.Array, params: GameParams
    ) -> tuple[jax.Array, HigherLowerState, jax.Array, jax.Array, dict]:
        scale = 1.0 / self.num_cards
        card, remaining = draw(key, state.remaining)
        reward = jnp.where((card > state.card) == (action == 0), scale, -scale)
        reward = jnp.where(card == state.card, 0.0, reward).astype(jnp.float32)
        state = state.replace(card=card, remaining=remaining, time=state.time + 1)
        return self.get_obs(state), state, reward, state.time >= self.num_cards - 1, {}

    def get_obs(self, state: HigherLowerState, params=None, key=None) -> jax.Array:
        """One-hot rank of the card on show: `[13]`."""
        return one_hot(state.card, 13)


REGISTRY, ALIASES = difficulty_registry(
    HigherLower, {"Easy": {"num_decks": 1}, "Medium": {"num_decks": 2}, "Hard": {"num_decks": 3}}
)

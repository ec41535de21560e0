"""POPGym's Autoencode: watch a sequence of cards, then recite their suits in reverse order."""

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.popgym.cards import GameParams, PopGymGame, deck_counts, difficulty_registry, draw, one_hot


@chex.dataclass(frozen=True)
class AutoencodeState:
    """cards `[N]` suits dealt so far (card i at index i, zeros not dealt yet); remaining `[4]` undealt
    cards per suit; time: steps taken."""

    cards: jax.Array
    remaining: jax.Array
    time: jax.Array


class Autoencode(PopGymGame):
    """Watch all N = 52 * num_decks cards of shuffled decks, then name their suits last to first.

    Observation `[5]`: POPGym's mode flag (1 while watching, 0 once reciting) and the one-hot suit
    of the card on show. Cards 0..N-1 are shown at steps 0..N-1; the last card already comes with
    flag 0 (POPGym switches mode when the deck runs out), which tells the agent to start reciting.
    While reciting no card is shown (suit part all zeros, where POPGym shows a constant dummy suit).
    Action: ``Discrete(4)``, a suit. The N-1 watching steps are unscored; at recitation step j
    (j = 0..N-1) the agent must name the suit of card N-1-j.
    Reward: +1/N if right, -1/N if wrong while reciting, so returns lie in [-1, 1].
    Episode: terminates after 2N-1 steps: Easy 1 deck (103 steps), Medium 2 decks (207 steps),
    Hard 3 decks (311 steps).
    Returns (analytic): optimal policy 1.0; uniformly random policy -0.5.
    """

    def __init__(self, num_decks: int = 1):
        super().__init__()
        self._set_deck(num_decks, "suits")
        self._set_sizes(obs_dim=5, num_actions=4, max_steps=2 * self.num_cards - 1)

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, AutoencodeState]:
        card, remaining = draw(key, deck_counts(self.num_decks, self.feature))
        cards = jnp.zeros(self.num_cards, jnp.int32).at[0].set(card)
        state = AutoencodeState(cards=cards, remaining=remaining, time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(
        self, key: jax.Array, state: AutoencodeState, action: jax.Array, params: GameParams
    ) -> tuple[jax.Array, AutoencodeState, jax.Array, jax.Array, dict]:
        n = self.num_cards
        scale = 1.0 / n
        target = 2 * n - 2 - state.time  # card to recite; > n - 1 while watching
        reward = jnp.where(action == state.cards[jnp.minimum(target, n - 1)], scale, -scale)
        reward = jnp.where(target < n, reward, 0.0).astype(jnp.float32)
        watching = state.time < n - 1
        card, remaining = draw(key, state.remaining)
        state = state.replace(
            cards=jnp.where(watching, state.cards.at[state.time + 1].set(card), state.cards),
            remaining=jnp.where(watching, remaining, state.remaining),
            time=state.time + 1,
        )
        return self.get_obs(state), state, reward, state.time >= 2 * n - 1, {}

    def get_obs(self, state: AutoencodeState, params=None, key=None) -> jax.Array:
        """[watching flag, one-hot suit of the card on show (zeros while reciting)]: `[5]`."""
        n = self.num_cards
        watching = (state.time < n - 1).astype(jnp.float32)
        suit = jnp.where(state.time < n, state.cards[jnp.minimum(state.time, n - 1)], -1)
        return jnp.concatenate([watching[None], one_hot(suit, 4)])


REGISTRY, ALIASES = difficulty_registry(
    Autoencode, {"Easy": {"num_decks": 1}, "Medium": {"num_decks": 2}, "Hard": {"num_decks": 3}}
)

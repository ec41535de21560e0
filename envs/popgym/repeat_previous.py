"""POPGym's RepeatPrevious: answer the suit of the card shown k-1 steps before the current one."""

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.popgym.cards import GameParams, PopGymGame, check_int, deck_counts, difficulty_registry, draw, one_hot


@chex.dataclass(frozen=True)
class RepeatPreviousState:
    """recent `[k]` suits of the last k cards dealt, card i in slot i % k; remaining `[4]` undealt cards
    per suit; time: steps taken (= index of the card on show)."""

    recent: jax.Array
    remaining: jax.Array
    time: jax.Array


class RepeatPrevious(PopGymGame):
    """Cards of ``num_decks`` shuffled decks (N = 52 * num_decks) are shown one per step.

    Observation: one-hot suit of the card on show, `[4]`. Action: ``Discrete(4)``, a suit. With
    card ``t`` on show the agent must name the suit of card ``t + 1 - k`` (for ``k = 1`` the card on
    show, for ``k = 4`` the one shown three steps earlier); the first ``k - 1`` steps are unscored.
    Reward: +1/(N-k) if right, -1/(N-k) if wrong on the N-k scored steps, so returns lie in [-1, 1].
    Episode: terminates after N-1 steps: Easy 1 deck, k=4 (51 steps); Medium 2 decks, k=32
    (103 steps); Hard 3 decks, k=64 (155 steps).
    Returns (analytic): optimal policy 1.0; uniformly random policy -0.5.
    """

    def __init__(self, num_decks: int = 1, k: int = 4):
        super().__init__()
        self._set_deck(num_decks, "suits")
        self.k = check_int("k", k, 1)
        if self.k >= self.num_cards:
            raise ValueError(f"k must be smaller than the {self.num_cards} cards of {num_decks} deck(s), got {k}")
        self._set_sizes(obs_dim=4, num_actions=4, max_steps=self.num_cards - 1)

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, RepeatPreviousState]:
        card, remaining = draw(key, deck_counts(self.num_decks, self.feature))
        recent = jnp.zeros(self.k, jnp.int32).at[0].set(card)
        state = RepeatPreviousState(recent=recent, remaining=remaining, time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(
        self, key: jax.Array, state: RepeatPreviousState, action: jax.Array, params: GameParams
    ) -> tuple[jax.Array, RepeatPreviousState, jax.Array, jax.Array, dict]:
        scale = 1.0 / (self.num_cards - self.k)
        slot = (state.time + 1) % self.k  # holds card time + 1 - k, about to be overwritten
        reward = jnp.where(action == state.recent[slot], scale, -scale)
        reward = jnp.where(state.time + 1 >= self.k, reward, 0.0).astype(jnp.float32)
        card, remaining = draw(key, state.remaining)
        state = state.replace(recent=state.recent.at[slot].set(card), remaining=remaining, time=state.time + 1)
        return self.get_obs(state), state, reward, state.time >= self.num_cards - 1, {}

    def get_obs(self, state: RepeatPreviousState, params=None, key=None) -> jax.Array:
        """One-hot suit of the card on show: `[4]`."""
        return one_hot(state.recent[state.time % self.k], 4)


REGISTRY, ALIASES = difficulty_registry(
    RepeatPrevious,
    {
        "Easy": {"num_decks": 1, "k": 4},
        "Medium": {"num_decks": 2, "k": 32},
        "Hard": {"num_decks": 3, "k": 64},
    },
)

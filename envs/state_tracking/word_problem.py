"""The word problem of a finite group as a POPGym-style memory game: name the product of everything shown so far.

State tracking in the sense of Merrill, Petty & Sabharwal, "The Illusion of State in State-Space Models" (ICML 2024)
and Grazzi et al., "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues" (ICLR 2025), after the
parity and modular tasks of Deletang et al., "Neural Networks and the Chomsky Hierarchy" (ICLR 2023), turned into
an RL task with POPGym's reward convention (Morad et al., ICLR 2023). Each step shows a uniformly random element
g_t of a group G; the answer is s_t = g_t . s_{t-1} (s_0 = g_0). A finite-precision linear recurrence whose
transitions have only positive real eigenvalues cannot track parity (Sarrof et al. 2024; Grazzi et al.), and the
S5 word problem is NC1-complete, beyond the fixed-depth SSMs Merrill et al. analyse (unless TC0 = NC1).
"""

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ssmrl.envs.popgym.cards import GameParams, PopGymGame, check_int, difficulty_registry, one_hot

EPISODE_LENGTHS = {"Easy": 50, "Medium": 100, "Hard": 200}


@chex.dataclass(frozen=True)
class WordProblemState:
    """symbol: the element on show; product: the product of every element shown, that one included;
    time: steps taken."""

    symbol: jax.Array
    product: jax.Array
    time: jax.Array


class WordProblem(PopGymGame):
    """Each step shows a uniformly random element of a finite group G (n elements); name the product so far.

    Subclasses pass G's multiplication table to :meth:`_set_group`. Observation: one-hot element on show `[n]`.
    Action: ``Discrete(n)``, an element. The action after element t is shown (step t, from 0) answers
    s_t = g_t . g_{t-1} ... g_0. Only every ``query_every``-th step is scored (steps t with (t + 1) % query_every
    == 0; the step is not flagged in the observation, the answer is the same at every step): +1/Q if right, -1/Q
    if wrong, Q = episode_length // query_every, so returns lie in [-1, 1]; other steps give 0.
    Episode: terminates after ``episode_length`` steps (Easy 50, Medium 100, Hard 200).
    Returns (analytic): optimal 1.0; uniformly random 2/n - 1; the best memoryless policy (the current
    observation only) 2/n - 1 if query_every > 1, else (1 + (Q - 1)(2/n - 1)) / Q: only s_0 = g_0 is on show,
    from step 1 on s_t is uniform and independent of g_t.
    Train without the previous action in the observation (``PrevActionReward``): with it a memoryless policy
    keeps s_t in its own answers (a_t = g_t . a_{t-1}) and scores 1.0; the previous reward leaks s_t as well.
    """

    def _set_group(self, table: np.ndarray, episode_length: int, query_every: int) -> None:
        """table `[n, n]`: ``table[g, s]`` is the index of g . s."""
        self.table = np.asarray(table, np.int32)
        self.group_size = len(self.table)
        self.episode_length = check_int("episode_length", episode_length, 1)
        self.query_every = check_int("query_every", query_every, 1)
        if self.query_every > self.episode_length:
            raise ValueError(f"query_every must be at most episode_length={episode_length}, got {query_every}")
        self.num_queries = self.episode_length // self.query_every
        self._set_sizes(obs_dim=self.group_size, num_actions=self.group_size, max_steps=self.episode_length)

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, WordProblemState]:
        symbol = jax.random.randint(key, (), 0, self.group_size, jnp.int32)
        state = WordProblemState(symbol=symbol, product=symbol, time=jnp.int32(0))
        return self.get_obs(state), state

    def step_env(
        self, key: jax.Array, state: WordProblemState, action: jax.Array, params: GameParams
    ) -> tuple[jax.Array, WordProblemState, jax.Array, jax.Array, dict]:
        scored = (state.time + 1) % self.query_every == 0
        reward = jnp.where(action == state.product, 1.0, -1.0) / self.num_queries
        reward = jnp.where(scored, reward, 0.0).astype(jnp.float32)
        symbol = jax.random.randint(key, (), 0, self.group_size, jnp.int32)
        product = jnp.asarray(self.table)[symbol, state.product]
        state = state.replace(symbol=symbol, product=product, time=state.time + 1)
        return self.get_obs(state), state, reward, state.time >= self.episode_length, {}

    def get_obs(self, state: WordProblemState, params=None, key=None) -> jax.Array:
        """One-hot element on show: `[n]`."""
        return one_hot(state.symbol, self.group_size)


def length_registry(cls: type, **settings: Any) -> tuple[dict, dict]:
    """REGISTRY and ALIASES of a word-problem env at Easy/Medium/Hard episode lengths (``"ParityEasy"`` aliases).

    ``settings``: the other constructor kwargs, the same at every level (and overridable in ``make``).
    """
    levels = {level: {**settings, "episode_length": length} for level, length in EPISODE_LENGTHS.items()}
    return difficulty_registry(cls, levels, popgym_ids=False)

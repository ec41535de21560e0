"""Parity and modular addition: the word problems of the cyclic groups Z_2 and Z_m (running sums mod m).

Parity is the simplest state-tracking task (Deletang et al. 2023; Grazzi et al. 2025); counting modulo m >= 3
needs more than real diagonal (even triangular) transitions, which track parity once they may be negative
(Grazzi et al.).
"""

import numpy as np

from ssmrl.envs.popgym.cards import check_int
from ssmrl.envs.state_tracking.word_problem import WordProblem, length_registry


class ModularAddition(WordProblem):
    """Each step shows a number in 0..m-1 (one-hot `[m]`); name the sum of all numbers so far mod m.

    Action: ``Discrete(m)``. Rewards, episodes and queries as in :class:`WordProblem`; registered with m = 5
    and a query every step, episodes of Easy 50, Medium 100, Hard 200 steps.
    Returns (analytic, m = 5): optimal 1.0; uniformly random -0.6; best memoryless policy Easy -0.568, Medium
    -0.584, Hard -0.592.
    """

    def __init__(self, modulus: int = 5, episode_length: int = 50, query_every: int = 1):
        super().__init__()
        self.modulus = check_int("modulus", modulus, 2)
        values = np.arange(self.modulus)
        self._set_group((values[:, None] + values[None, :]) % self.modulus, episode_length, query_every)


class Parity(ModularAddition):
    """Each step shows a random bit (one-hot `[2]`); name the parity of all bits so far (``Discrete(2)``).

    Rewards, episodes and queries as in :class:`WordProblem`; registered with a query every step, episodes of
    Easy 50, Medium 100, Hard 200 steps.
    Returns (analytic): optimal 1.0; uniformly random 0.0; best memoryless policy Easy 0.02, Medium 0.01,
    Hard 0.005.
    """

    def __init__(self, episode_length: int = 50, query_every: int = 1):
        super().__init__(modulus=2, episode_length=episode_length, query_every=query_every)


_PARITY, _PARITY_ALIASES = length_registry(Parity, query_every=1)
_MODULAR, _MODULAR_ALIASES = length_registry(ModularAddition, modulus=5, query_every=1)
REGISTRY, ALIASES = {**_PARITY, **_MODULAR}, {**_PARITY_ALIASES, **_MODULAR_ALIASES}

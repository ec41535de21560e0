"""Permutation composition: the word problem of the symmetric group S_5 (Merrill et al. 2024; Grazzi et al. 2025).

S_5 is not solvable (it contains A_5, the smallest non-solvable group), so its word problem is NC1-complete
(Barrington 1989): beyond SSMs and transformers of fixed depth (Merrill et al.) unless TC0 = NC1, while a finite
automaton with 120 states tracks it exactly.
"""

import itertools

import numpy as np

from ssmrl.envs.popgym.cards import check_int
from ssmrl.envs.state_tracking.word_problem import WordProblem, length_registry

MAX_ITEMS = 6  # 720 elements: the one-hot observation, the action space and the table grow as num_items!


def permutations(num_items: int) -> np.ndarray:
    """Every permutation of ``range(num_items)`` in lexicographic order (identity first): int32 `[n!, num_items]`.

    Row p maps item i to ``p[i]`` (``itertools.permutations`` order, so element k is its k-th tuple).
    """
    return np.array(list(itertools.permutations(range(num_items))), np.int32)


def composition_table(perms: np.ndarray) -> np.ndarray:
    """table `[n!, n!]`: ``table[g, s]`` = the index of g . s (s first, then g: ``(g . s)[i] = g[s[i]]``)."""
    count, num_items = perms.shape
    composed = perms[np.arange(count)[:, None, None], perms[None, :, :]]  # [g, s, i] = perms[g, perms[s, i]]
    radix = num_items ** np.arange(num_items - 1, -1, -1)  # lexicographic order = order of these codes
    return np.searchsorted(perms @ radix, composed @ radix).astype(np.int32)


class PermutationComposition(WordProblem):
    """Each step shows a permutation of ``num_items`` = 5 items; name the composition of all shown so far.

    Observation: one-hot permutation `[120]`, any of the 120 elements of S_5 with equal probability (the full
    group as symbols, as in the S_5 word problem: from step 1 on the answer is then uniform and independent of the
    observation, with no shortcut through the step count or a small generating set's slowly mixing walk, e.g. the
    sign a word of transpositions gets from its length). Action: ``Discrete(120)``, the composition
    g_t . ... . g_0 (g_0 applied first), both numbered as in :func:`permutations`. Rewards, episodes and queries as
    in :class:`WordProblem`; registered with a query every step, episodes of Easy 50, Medium 100, Hard 200 steps.
    Returns (analytic, 5 items): optimal 1.0; uniformly random 1/60 - 1 = -0.983; best memoryless policy Easy
    -0.944, Medium -0.9635, Hard -0.973.
    """

    def __init__(self, num_items: int = 5, episode_length: int = 50, query_every: int = 1):
        super().__init__()
        self.num_items = check_int("num_items", num_items, 2)
        if self.num_items > MAX_ITEMS:
            raise ValueError(f"num_items must be at most {MAX_ITEMS} ({MAX_ITEMS}! elements), got {num_items}")
        self.permutations = permutations(self.num_items)
        self._set_group(composition_table(self.permutations), episode_length, query_every)


REGISTRY, ALIASES = length_registry(PermutationComposition, num_items=5, query_every=1)

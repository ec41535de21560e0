"""POPGym card/game/bandit envs: API, episode mechanics, and the returns their docstrings state.

Each env at each difficulty gets one jitted rollout (`lax.scan` over 64 vmapped envs, auto-reset on)
that runs either the env's reference policy or a uniformly random one, picked by a traced flag so
both share one compilation. Reference policies: where the task only needs memory, an optimal agent
that sees only observations and keeps its own memory (so the test checks the task as the agent sees
it); elsewhere a clairvoyant oracle that reads the hidden state.
"""

import functools
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces
from hypothesis import given
from hypothesis import strategies as st

from ssmrl.envs.popgym import (
    autoencode,
    battleship,
    cards,
    concentration,
    count_recall,
    higher_lower,
    minesweeper,
    multiarmed_bandit,
    repeat_first,
    repeat_previous,
)
from tests.compile_options import FULL_OPTIMIZATION
from tests.envs.game_rollout import rollout

MODULES = (
    autoencode,
    battleship,
    concentration,
    count_recall,
    higher_lower,
    minesweeper,
    multiarmed_bandit,
    repeat_first,
    repeat_previous,
)
REGISTRY = {name: factory for module in MODULES for name, factory in module.REGISTRY.items()}
NUM_ENVS = 64


# ---- reference policies: (init(env) -> memory, act(env, state, obs, memory, new_episode) -> (action, memory))


def _stateless(choose):
    """A policy without memory that reads the hidden state: `choose(env, state) -> action`."""
    return lambda env: jnp.zeros(()), lambda env, state, obs, memory, new: (choose(env, state), memory)


def _repeat_first(env, state, obs, first, new):
    first = jnp.where(new, jnp.argmax(obs), first)
    return first, first


def _repeat_previous(env, state, obs, history, new):
    """history `[k]`: suits seen, most recent first; the answer is the one seen k-1 steps ago."""
    history = jnp.roll(history, 1).at[0].set(jnp.argmax(obs))
    return history[env.k - 1], history


def _autoencode(env, state, obs, memory, new):
    """memory: (stack `[N]` of suits seen, its size); push every card shown, pop one per recital."""
    stack, size = memory
    size = jnp.where(new, 0, size)
    shown = obs[1:].any()
    stack, size = stack.at[size].set(jnp.where(shown, jnp.argmax(obs[1:]), 0)), size + shown
    reciting = obs[0] == 0
    action, size = stack[jnp.maximum(size - 1, 0)], size - reciting
    return action, (stack, size)


def _count_recall(env, state, obs, counts, new):
    value, query = jnp.argmax(obs[: env.num_kinds]), jnp.argmax(obs[env.num_kinds :])
    counts = jnp.where(new, 0, counts).at[value].add(1)
    return counts[query], counts


def _higher_lower(env, state, obs, seen, new):
    """Card counting: guess the likelier direction among the cards not seen yet."""
    card = jnp.argmax(obs)
    seen = jnp.where(new, 0, seen).at[card].add(1)
    left, ranks = 4 * env.num_decks - seen, jnp.arange(13)
    higher, lower = jnp.where(ranks > card, left, 0).sum(), jnp.where(ranks < card, left, 0).sum()
    return jnp.where(higher >= lower, 0, 1), seen


def _concentration_oracle(env, state):
    positions = jnp.arange(env.num_cards)
    first = jnp.maximum(state.first, 0)
    partner = ~state.face_up & (state.cards == state.cards[first]) & (positions != state.first)
    return jnp.where(state.first < 0, jnp.argmax(~state.face_up), jnp.argmax(partner))


POLICIES = {
    "RepeatFirst": (lambda env: jnp.int32(0), _repeat_first),
    "RepeatPrevious": (lambda env: jnp.zeros(env.k, jnp.int32), _repeat_previous),
    "Autoencode": (lambda env: (jnp.zeros(env.num_cards, jnp.int32), jnp.int32(0)), _autoencode),
    "CountRecall": (lambda env: jnp.zeros(env.num_kinds, jnp.int32), _count_recall),
    "HigherLower": (lambda env: jnp.zeros(13, jnp.int32), _higher_lower),
    "Concentration": _stateless(_concentration_oracle),
    "Battleship": _stateless(lambda env, s: jnp.argmax(s.ships & ~s.guesses)),
    "MineSweeper": _stateless(lambda env, s: jnp.argmax(~s.mines & ~s.viewed)),
    "MultiarmedBandit": _stateless(lambda env, s: jnp.argmax(s.payout)),
}

# Returns stated in the docstrings: (reference policy, random policy).
EXPECTED = {
    **{f"{n}-{lv}": (1.0, -0.5) for n in ("RepeatFirst", "RepeatPrevious", "Autoencode") for lv in cards.LEVELS},
    "CountRecall-Easy": (1.0, -0.926),
    "CountRecall-Medium": (1.0, -0.926),
    "CountRecall-Hard": (1.0, -0.882),
    "HigherLower-Easy": (0.526, 0.0),
    "HigherLower-Medium": (0.516, 0.0),
    "HigherLower-Hard": (0.511, 0.0),
    "Concentration-Easy": (1.0, -0.192),
    "Concentration-Medium": (1.0, -0.186),
    "Concentration-Hard": (1.0, -0.835),
    "Battleship-Easy": (1.0, -0.449),
    "Battleship-Medium": (1.0, -0.414),
    "Battleship-Hard": (1.0, -0.397),
    "MineSweeper-Easy": (1.0, -0.243),
    "MineSweeper-Medium": (1.0, -0.401),
    "MineSweeper-Hard": (1.0, -0.433),
    "MultiarmedBandit-Easy": (9 / 11, 0.0),
    "MultiarmedBandit-Medium": (19 / 21, 0.0),
    "MultiarmedBandit-Hard": (29 / 31, 0.0),
}
# Families whose reference policy reaches an analytic optimum, checked exactly (not as a batch mean).
EXACT = ("RepeatFirst", "RepeatPrevious", "Autoencode", "CountRecall", "Concentration", "Battleship", "MineSweeper")
# Episode lengths per level: fixed ones (any policy), and those of the exact reference policies.
FIXED_LENGTHS = {
    "RepeatFirst": (51, 415, 831),
    "RepeatPrevious": (51, 103, 155),
    "Autoencode": (103, 207, 311),
    "CountRecall": (51, 103, 207),
    "HigherLower": (51, 103, 155),
    "MultiarmedBandit": (200, 400, 600),
}
REFERENCE_LENGTHS = {"Battleship": (12, 12, 12), "MineSweeper": (14, 30, 54), "Concentration": (52, 104, 52)}
# Rollouts that run longer than they compile (CPU, 2026-12-07: Battleship-Hard 10.7 s at the suite's -O0, 0.6 s at
# -O3): compiled at XLA's default level. The other families' rollouts run in under 0.3 s and compile about 40%
# faster at -O0.
LONG_ROLLOUTS = ("Battleship",)


@functools.cache
def compiled(name):
    """The env and its jitted rollout `(key, use_reference) -> outputs` over one episode's limit + 2 steps."""
    env = REGISTRY[name]()
    num_steps = env.default_params.max_steps_in_episode + 2
    family = name.split("-")[0]
    return env, jax.jit(functools.partial(rollout, env, POLICIES[family], num_envs=NUM_ENVS, num_steps=num_steps),
                        compiler_options=FULL_OPTIMIZATION if family in LONG_ROLLOUTS else None)


@functools.cache
def outputs(name, seed, use_reference):
    return jax.tree.map(np.asarray, compiled(name)[1](jax.random.key(seed), use_reference))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_spaces_shapes_dtypes_and_auto_reset(name):
    env, _ = compiled(name)
    out = outputs(name, 0, False)
    params = env.default_params
    obs_space, action_space = env.observation_space(params), env.action_space(params)
    assert isinstance(action_space, spaces.Discrete) and action_space.n == env.num_actions
    assert isinstance(obs_space, spaces.Box) and obs_space.dtype == jnp.float32
    for key in ("reset_obs", "last_obs"):
        assert out[key].shape == (NUM_ENVS, *obs_space.shape) and out[key].dtype == np.float32
    assert out["in_range"]
    assert out["rewards"].shape == (params.max_steps_in_episode + 2, NUM_ENVS)
    assert out["rewards"].dtype == np.float32 and out["terminated"].dtype == np.bool_
    assert np.abs(out["rewards"]).max() <= 1.0
    # every episode ends by the time limit; a finished episode restarts at time 0 and goes on
    done = out["terminated"] | out["truncated"]
    assert (out["first_length"] >= 1).all() and (out["first_length"] <= params.max_steps_in_episode).all()
    assert (out["times"][done] == 0).all() and (out["times"][~done] > 0).all()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_deterministic_for_a_fixed_key(name):
    reference_run, random_run = outputs(name, 0, True), outputs(name, 0, False)
    np.testing.assert_array_equal(reference_run["reset_obs"], random_run["reset_obs"])
    if name.endswith("-Easy"):  # the step code is the same at every level: rerun whole episodes once
        again = jax.tree.map(np.asarray, compiled(name)[1](jax.random.key(0), False))
        jax.tree.map(np.testing.assert_array_equal, random_run, again)
        assert not np.array_equal(random_run["rewards"], outputs(name, 1, False)["rewards"])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_reference_and_random_returns(name):
    family, level = name.split("-")
    reference_out, random_out = outputs(name, 0, True), outputs(name, 0, False)
    lengths = {**FIXED_LENGTHS, **REFERENCE_LENGTHS}.get(family)
    if lengths is not None:
        assert (reference_out["first_length"] == lengths[cards.LEVELS.index(level)]).all()
    if family in FIXED_LENGTHS:
        assert (random_out["first_length"] == lengths[cards.LEVELS.index(level)]).all()
    for out, expected in zip((reference_out, random_out), EXPECTED[name], strict=True):
        returns = out["first_return"]
        assert (np.abs(returns) <= 1.0 + 1e-5).all()
        if out is reference_out and family in EXACT:
            np.testing.assert_allclose(returns, expected, atol=1e-4)
        else:  # 4.5 standard errors of the batch mean, plus the rounding of the stated value
            tolerance = 4.5 * returns.std() / np.sqrt(len(returns)) + 0.005
            assert abs(returns.mean() - expected) < tolerance, (returns.mean(), expected, tolerance)


# ---- deck, game rules, registry


@jax.jit
def _deal_two_decks_of_ranks(key):
    def deal(remaining, key):
        card, remaining = cards.draw(key, remaining)
        return remaining, card

    return jax.lax.scan(deal, cards.deck_counts(2, "ranks"), jax.random.split(key, 104))


@given(seed=st.integers(0, 2**31 - 1))
def test_lazy_dealing_deals_every_card_once(seed):
    remaining, dealt = _deal_two_decks_of_ranks(jax.random.key(seed))
    assert (np.asarray(remaining) == 0).all()
    np.testing.assert_array_equal(np.bincount(np.asarray(dealt), minlength=13), np.full(13, 8))


@pytest.mark.parametrize("feature", ["colors", "suits", "ranks"])
def test_shuffled_deck_has_popgym_composition(feature):
    deck = np.asarray(cards.shuffled_deck(jax.random.key(0), 2, feature))
    size = cards.FEATURE_SIZES[feature]
    np.testing.assert_array_equal(np.bincount(deck, minlength=size), np.full(size, 104 // size))
    np.testing.assert_array_equal(np.asarray(cards.deck_counts(2, feature)), np.full(size, 104 // size))


@given(mines=st.lists(st.booleans(), min_size=30, max_size=30))
def test_mine_counts_match_brute_force(mines):
    grid = np.array(mines).reshape(5, 6)
    padded = np.pad(grid, 1).astype(int)
    expected = [[padded[r : r + 3, c : c + 3].sum() for c in range(6)] for r in range(5)]
    np.testing.assert_array_equal(np.asarray(minesweeper.mine_counts(jnp.asarray(grid))), expected)


def _step(env, state, action):
    obs, state, reward, terminated, _ = env.step_env(jax.random.key(0), state, jnp.int32(action), env.default_params)
    return np.asarray(obs), state, float(reward), bool(terminated)


def test_concentration_turn_rules():
    env = concentration.Concentration(num_decks=1, feature="colors")
    success, failure = 1 / 26, -1 / env.episode_length
    state = concentration.ConcentrationState(
        cards=jnp.arange(52) % 2, face_up=jnp.zeros(52, bool), first=jnp.int32(-1), time=jnp.int32(0)
    )
    obs, state, reward, _ = _step(env, state, 0)  # first card of a turn: shown, no reward
    assert reward == 0 and int(state.first) == 0 and obs.reshape(52, 3)[0].argmax() == 0
    obs, state, reward, _ = _step(env, state, 1)  # mismatch: both shown once, then face down
    assert reward == pytest.approx(2 * failure) and int(state.first) == -1 and not state.face_up.any()
    np.testing.assert_array_equal(obs.reshape(52, 3)[:3].argmax(-1), [0, 1, 2])
    _, state, reward, _ = _step(env, state, 4)
    _, state, reward, _ = _step(env, state, 4)  # the same card twice fails
    assert reward == pytest.approx(2 * failure) and not state.face_up.any()
    _, state, _, _ = _step(env, state, 0)
    obs, state, reward, _ = _step(env, state, 2)  # a match stays face up
    assert reward == pytest.approx(success) and np.flatnonzero(state.face_up).tolist() == [0, 2]
    _, state, reward, _ = _step(env, state, 2)  # turning a matched card fails and ends the turn
    assert reward == pytest.approx(failure) and int(state.first) == -1
    _, state, _, _ = _step(env, state, 6)
    _, state, reward, _ = _step(env, state, 0)
    assert reward == pytest.approx(2 * failure) and int(state.first) == -1


def test_minesweeper_click_rules():
    env = minesweeper.MineSweeper(height=4, width=4, num_mines=2)
    mines = jnp.zeros(16, bool).at[jnp.array([0, 5])].set(True)
    counts = minesweeper.mine_counts(mines.reshape(4, 4)).reshape(-1)
    state = minesweeper.MineSweeperState(mines=mines, viewed=jnp.zeros(16, bool), counts=counts, time=jnp.int32(0))
    obs, state, reward, terminated = _step(env, state, 1)  # next to both mines
    assert reward == pytest.approx(1 / 14) and obs.argmax() == 2 and not terminated
    _, state, reward, terminated = _step(env, state, 1)  # already cleared
    assert reward == pytest.approx(-0.5 / 12) and not terminated
    obs, _, reward, terminated = _step(env, state, 5)  # a mine ends the episode
    assert reward == pytest.approx(-0.5 - 1 / 14) and terminated and obs.argmax() == 2


def test_registry_names_aliases_and_overrides():
    for module in MODULES:
        for canonical in module.REGISTRY:
            family, level = canonical.split("-")
            assert module.ALIASES[f"{family}{level}"] == canonical
            assert module.ALIASES[f"popgym-{family}{level}-v0"] == canonical
    assert minesweeper.ALIASES["MinesweeperHard"] == "MineSweeper-Hard"
    assert multiarmed_bandit.ALIASES["MultiArmedBanditEasy"] == "MultiarmedBandit-Easy"
    env = repeat_previous.REGISTRY["RepeatPrevious-Medium"](k=8)
    assert (env.num_decks, env.k, env.default_params.max_steps_in_episode) == (2, 8, 103)
    assert concentration.REGISTRY["Concentration-Hard"]().num_values == 13
    with pytest.raises(ValueError, match="accepted"):
        repeat_first.REGISTRY["RepeatFirst-Easy"](num_deck=2)


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (repeat_first.RepeatFirst, {"num_decks": 0}, "num_decks"),
        (repeat_previous.RepeatPrevious, {"num_decks": 1, "k": 52}, "k must be smaller"),
        (count_recall.CountRecall, {"feature": "jokers"}, "accepted"),
        (concentration.Concentration, {"feature": "suits"}, "accepted"),
        (higher_lower.HigherLower, {"num_decks": 1.5}, "num_decks"),
        (battleship.Battleship, {"board_size": 3}, "ship_sizes"),
        (minesweeper.MineSweeper, {"num_mines": 14}, "free cells"),
        (multiarmed_bandit.MultiarmedBandit, {"episode_length": 0}, "episode_length"),
        (autoencode.Autoencode, {"num_decks": True}, "num_decks"),
    ],
)
def test_bad_settings_raise_value_error(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_suite_merges_all_popgym_envs():
    suite = pytest.importorskip("ssmrl.envs.popgym.suite")
    assert len(suite.POPGYM_ENVS) == 45 and set(REGISTRY) <= set(suite.POPGYM_ENVS)
    assert all(target in suite.POPGYM_ENVS for target in suite.POPGYM_ALIASES.values())
    fake = SimpleNamespace(__name__="fake", REGISTRY={"RepeatFirst-Easy": None}, ALIASES={})
    with pytest.raises(ValueError, match="RepeatFirst-Easy"):
        suite.merge_registries([repeat_first, fake])
    dangling = SimpleNamespace(__name__="dangling", REGISTRY={}, ALIASES={"Nope": "Nope-Easy"})
    with pytest.raises(ValueError, match="Nope"):
        suite.merge_registries([dangling])

"""State-tracking envs (Parity, ModularAddition, PermutationComposition): API, rules, and the returns their
docstrings state.

Each env at each level gets one jitted rollout (`lax.scan` over 64 vmapped envs, auto-reset on, made with
`ssmrl.envs.make`) whose policy is picked by a traced index, so every policy shares one compilation: uniformly
random; the oracle (reads the running product from the env state); the tracker (sees only observations and keeps
the product itself, with a group table built here independently of the env's); a memoryless lookup table
(answer = lookup[element on show]).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces
from hypothesis import given
from hypothesis import strategies as st

import ssmrl.envs as envs
from ssmrl.envs.popgym.cards import LEVELS
from ssmrl.envs.state_tracking import modular, permutation
from ssmrl.envs.state_tracking.suite import STATE_TRACKING_ALIASES, STATE_TRACKING_ENVS
from ssmrl.envs.wrappers import PrevActionReward
from tests.envs.game_rollout import rollout

NUM_ENVS = 64
RANDOM, ORACLE, TRACKER, LOOKUP = range(4)
SIZES = {"Parity": 2, "ModularAddition": 5, "PermutationComposition": 120}
LENGTHS = dict(zip(LEVELS, (50, 100, 200), strict=True))
NAMES = [f"{family}-{level}" for family in SIZES for level in LEVELS]
# Stated in the docstrings: (uniformly random, best memoryless) returns; the optimum is 1.0 everywhere.
STATED = {
    "Parity-Easy": (0.0, 0.02), "Parity-Medium": (0.0, 0.01), "Parity-Hard": (0.0, 0.005),
    "ModularAddition-Easy": (-0.6, -0.568), "ModularAddition-Medium": (-0.6, -0.584),
    "ModularAddition-Hard": (-0.6, -0.592),
    "PermutationComposition-Easy": (-0.983, -0.944), "PermutationComposition-Medium": (-0.983, -0.9635),
    "PermutationComposition-Hard": (-0.983, -0.973),
}


def analytic_returns(size: int, episode_length: int, query_every: int) -> tuple[float, float]:
    """(uniformly random, best memoryless) expected returns: only step 0's answer is the element on show."""
    queries, chance = episode_length // query_every, 2 / size - 1
    return chance, chance if query_every > 1 else (1 + (queries - 1) * chance) / queries


def symmetric_table(num_items: int) -> np.ndarray:
    """S_n's `[n!, n!]` table, entry [g, s] = g . s, built without the env's code (itertools order, dict lookup)."""
    perms = list(itertools.permutations(range(num_items)))
    index = {p: i for i, p in enumerate(perms)}
    return np.array([[index[tuple(g[i] for i in s)] for s in perms] for g in perms])


@functools.cache
def group_table(family: str) -> np.ndarray:
    """`[n, n]`, entry [g, s] = g . s: Z_2, Z_5 or S_5."""
    if family == "PermutationComposition":
        return symmetric_table(5)
    values = np.arange(SIZES[family])
    return (values[:, None] + values[None, :]) % SIZES[family]


def policy(table, choice, lookup):
    table = jnp.asarray(table)

    def act(env, state, obs, product, new):
        symbol = jnp.argmax(obs)
        product = jnp.where(new, symbol, table[symbol, product])
        actions = jnp.stack([product, state.product, product, lookup[symbol]])
        return actions[choice], product

    return (lambda env: jnp.int32(0)), act


@functools.cache
def compiled(name, **overrides):
    """The env and its jitted rollout `(key, choice, lookup [n]) -> outputs` over one episode + 2 steps."""
    env, _ = envs.make(name, **overrides)
    table = group_table(name.split("-")[0])

    def run(key, choice, lookup):
        return rollout(env, policy(table, choice, lookup), key, choice != RANDOM, NUM_ENVS, env.episode_length + 2,
                       record=lambda state: (state.symbol, state.product))

    return env, jax.jit(run)


@functools.cache
def outputs(name, seed, choice, **overrides):
    env, run = compiled(name, **overrides)
    return jax.tree.map(np.asarray, run(jax.random.key(seed), choice, jnp.arange(env.group_size)))


def assert_mean_near(returns, expected):
    """The batch mean is within 4.5 standard errors of `expected` (1e-5 if every return is equal)."""
    tolerance = 4.5 * returns.std() / np.sqrt(len(returns)) + 1e-5
    assert abs(returns.mean() - expected) < tolerance, (returns.mean(), expected, tolerance)


@pytest.mark.parametrize("name", NAMES)
def test_spaces_one_hot_observations_and_episode_lengths(name):
    family, level = name.split("-")
    env, _ = compiled(name)
    size, length = SIZES[family], LENGTHS[level]
    obs_space, action_space = env.observation_space(env.default_params), env.action_space(env.default_params)
    assert isinstance(action_space, spaces.Discrete) and action_space.n == size == env.num_actions
    assert isinstance(obs_space, spaces.Box) and obs_space.shape == (size,) and obs_space.dtype == jnp.float32
    assert env.default_params.max_steps_in_episode == length
    for choice in (RANDOM, ORACLE):
        out = outputs(name, 0, choice)
        assert out["reset_obs"].dtype == np.float32 and out["in_range"]
        np.testing.assert_array_equal(out["reset_obs"].sum(-1), 1.0)
        assert (out["first_length"] == length).all()
        assert out["terminated"][length - 1].all() and not out["terminated"][: length - 1].any()
        np.testing.assert_allclose(np.abs(out["rewards"]), 1 / length)  # every step is scored


@pytest.mark.parametrize("name", NAMES)
def test_optimal_random_and_memoryless_returns(name):
    family, level = name.split("-")
    random_return, memoryless_return = analytic_returns(SIZES[family], LENGTHS[level], 1)
    np.testing.assert_allclose((random_return, memoryless_return), STATED[name], atol=5e-4)
    for choice in (ORACLE, TRACKER):
        np.testing.assert_allclose(outputs(name, 0, choice)["first_return"], 1.0, atol=1e-5)
    assert_mean_near(outputs(name, 0, RANDOM)["first_return"], random_return)
    # answering the element on show is a best memoryless policy: right at step 0, at chance afterwards
    assert_mean_near(outputs(name, 0, LOOKUP)["first_return"], memoryless_return)


@pytest.mark.parametrize("name", NAMES)
def test_answer_is_not_a_function_of_the_observation(name):
    """A memoryless policy fitted to one rollout (the likeliest answer per element on show) is no better than the
    best memoryless return on another rollout, which is within 2/Q of chance."""
    env, run = compiled(name)
    symbols, products = outputs(name, 0, RANDOM)["records"]
    counts = np.zeros((env.group_size, env.group_size))
    np.add.at(counts, (symbols.ravel(), products.ravel()), 1)
    returns = np.asarray(run(jax.random.key(1), LOOKUP, jnp.asarray(counts.argmax(1)))["first_return"])
    memoryless_return = analytic_returns(env.group_size, env.episode_length, 1)[1]
    assert returns.mean() < memoryless_return + 4.5 * returns.std() / np.sqrt(len(returns)) + 1e-5


@pytest.mark.parametrize(("name", "query_every"), [("ModularAddition-Easy", 4), ("Parity-Medium", 100)])
def test_query_every_scores_only_every_kth_step(name, query_every):
    env, _ = compiled(name, query_every=query_every)
    queries = env.episode_length // query_every
    random_out = outputs(name, 0, RANDOM, query_every=query_every)
    done = random_out["terminated"]
    step = np.where(done, env.episode_length, random_out["times"])  # 1-based number of the step just taken
    scored = step % query_every == 0
    np.testing.assert_allclose(np.abs(random_out["rewards"]), np.where(scored, 1 / queries, 0.0))
    np.testing.assert_allclose(outputs(name, 0, ORACLE, query_every=query_every)["first_return"], 1.0, atol=1e-5)
    random_return, memoryless_return = analytic_returns(env.group_size, env.episode_length, query_every)
    assert memoryless_return == random_return  # step 0 is never scored
    assert_mean_near(random_out["first_return"], random_return)
    assert_mean_near(outputs(name, 0, LOOKUP, query_every=query_every)["first_return"], memoryless_return)


@pytest.mark.parametrize("family", list(SIZES))
def test_deterministic_for_a_fixed_key(family):
    name = f"{family}-Easy"
    env, run = compiled(name)
    again = jax.tree.map(np.asarray, run(jax.random.key(0), RANDOM, jnp.arange(env.group_size)))
    jax.tree.map(np.testing.assert_array_equal, outputs(name, 0, RANDOM), again)
    assert not np.array_equal(outputs(name, 0, RANDOM)["records"], outputs(name, 1, RANDOM)["records"])


def test_jit_vmap_matches_one_env_at_a_time():
    """Under jit and vmap each env steps as it does alone and eagerly (all three share WordProblem's code)."""
    env, params = envs.make("PermutationComposition-Easy", episode_length=3)
    keys = jax.random.split(jax.random.key(0), (5, 2))  # [steps, envs]
    actions = jnp.arange(10).reshape(5, 2) % env.group_size

    def run(reset_key, step_keys, acts):
        """Reset, then 4 steps (one auto-reset) of one env: every output."""
        out = [env.reset(reset_key, params)]
        for key, action in zip(step_keys, acts, strict=True):
            out.append(env.step(key, out[-1][1], action, params)[:5])
        return out

    batch = jax.jit(jax.vmap(run, (0, 1, 1)))(keys[0], keys[1:], actions[1:])
    for i in range(2):
        one = run(keys[0, i], keys[1:, i], actions[1:, i])
        jax.tree.map(lambda b, o, i=i: np.testing.assert_array_equal(np.asarray(b)[i], o), batch, one)


def test_previous_action_in_the_observation_needs_no_memory():
    """WordProblem's caveat: with PrevActionReward a memoryless policy scores 1.0 by composing the element on
    show with its own previous answer (all zeros, read as element 0 = the identity, after a reset)."""
    env = PrevActionReward(envs.make("PermutationComposition-Easy")[0])
    table, size = jnp.asarray(group_table("PermutationComposition")), 120

    def act(env, state, obs, memory, new):
        return table[jnp.argmax(obs[:size]), jnp.argmax(obs[size : 2 * size])], memory

    out = jax.jit(lambda key: rollout(env, (lambda env: (), act), key, True, NUM_ENVS, 52))(jax.random.key(0))
    np.testing.assert_allclose(out["first_return"], 1.0, atol=1e-5)


@pytest.mark.parametrize("num_items", [2, 3, 4, 5])
def test_permutation_numbering_and_table(num_items):
    perms = permutation.permutations(num_items)
    np.testing.assert_array_equal(perms, list(itertools.permutations(range(num_items))))  # identity first
    np.testing.assert_array_equal(permutation.composition_table(perms), symmetric_table(num_items))
    table = modular.ModularAddition(5).table
    np.testing.assert_array_equal(table, group_table("ModularAddition"))


@given(
    episode_length=st.integers(-2, 300), query_every=st.integers(-2, 300), modulus=st.integers(0, 9),
)
def test_settings_are_checked(episode_length, query_every, modulus):
    valid = episode_length >= 1 and 1 <= query_every <= episode_length and modulus >= 2
    if valid:
        env = modular.ModularAddition(modulus, episode_length, query_every)
        assert env.num_queries == episode_length // query_every and env.num_actions == modulus
    else:
        with pytest.raises(ValueError, match="modulus|episode_length|query_every"):
            modular.ModularAddition(modulus, episode_length, query_every)


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        (modular.ModularAddition, {"modulus": 1}, "modulus must be an integer >= 2, got 1"),
        (modular.Parity, {"episode_length": 0}, "episode_length must be an integer >= 1, got 0"),
        (modular.Parity, {"query_every": 51}, "query_every must be at most episode_length=50, got 51"),
        (permutation.PermutationComposition, {"num_items": 7}, "num_items must be at most 6"),
        (permutation.PermutationComposition, {"num_items": True}, "num_items must be an integer"),
    ],
)
def test_bad_settings_raise_value_error(factory, kwargs, match):
    with pytest.raises(ValueError, match=match):
        factory(**kwargs)


def test_registry_names_aliases_and_overrides():
    assert sorted(STATE_TRACKING_ENVS) == sorted(NAMES)
    for name in NAMES:
        family, level = name.split("-")
        assert STATE_TRACKING_ALIASES[f"{family}{level}"] == name
        env, params = envs.make(f"{family}{level}")
        assert type(env).__name__ == family and params.max_steps_in_episode == LENGTHS[level]
    assert not any(alias.startswith("popgym-") for alias in STATE_TRACKING_ALIASES)  # POPGym has no such ids
    env, _ = envs.make("PermutationComposition-Medium", num_items=4, query_every=10)
    assert (env.num_actions, env.episode_length, env.num_queries) == (24, 100, 10)
    assert envs.make("ModularAddition-Hard", modulus=7)[0].observation_space(None).shape == (7,)
    with pytest.raises(ValueError, match="accepted"):
        envs.make("Parity-Easy", modulus=3)

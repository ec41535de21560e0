"""envs.make and the registry: names, aliases, kwargs, errors, and the env contract of every registered env.

The contract test compiles one vmapped rollout per env (about 1 s for POPGym and gymnax envs, 2-25 s for
jaxmarl and brax ones on a 2-core CPU), so the default suite runs POPGym and the state-tracking tasks at Easy,
two gymnax envs and one cheap brax and jaxmarl representative, and marks the other ~85 envs ``slow``.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

import ssmrl.envs as envs
from ssmrl.envs.gymnax_adapter import gymnax_names
from ssmrl.envs.jaxmarl_adapter import MultiAgentAdapter
from ssmrl.envs.popgym.suite import POPGYM_ALIASES, POPGYM_ENVS
from ssmrl.envs.registry import registered_names
from ssmrl.envs.state_tracking.suite import STATE_TRACKING_ALIASES, STATE_TRACKING_ENVS

NUM_ENVS, NUM_STEPS = 64, 6
DEFAULT_SUITE = {"CartPole-v1", "Pendulum-v1", "brax/inverted_pendulum", "jaxmarl/MPE_simple_spread_v3",
                 "MetaStatelessCartPole"}
DEFAULT_SUITE |= {name for name in (*POPGYM_ENVS, *STATE_TRACKING_ENVS) if name.endswith("-Easy")}
NEEDS_NETWORK = {"MNISTBandit-bsuite"}  # downloads MNIST when built


def _param(name: str):
    return name if name in DEFAULT_SUITE else pytest.param(name, marks=pytest.mark.slow)


def _single_agent_rollout(env, params):
    """Jitted ``key -> (obs0 [N, ...], (obs, reward, terminated, truncated, final_obs, time) [T, N, ...])``."""
    action_space = env.action_space(params)

    @jax.jit
    def run(key):
        key_reset, key_steps = jax.random.split(key)
        obs0, state = jax.vmap(env.reset, (0, None))(jax.random.split(key_reset, NUM_ENVS), params)

        def body(state, key):
            key_act, key_step = jax.random.split(key)
            action = jax.vmap(action_space.sample)(jax.random.split(key_act, NUM_ENVS))
            obs, state, reward, terminated, truncated, info = jax.vmap(env.step, (0, 0, 0, None))(
                jax.random.split(key_step, NUM_ENVS), state, action, params
            )
            time = getattr(state, "time", jnp.full(NUM_ENVS, -1, jnp.int32))
            return state, (obs, reward, terminated, truncated, info["final_observation"], time)

        return obs0, jax.lax.scan(body, state, jax.random.split(key_steps, NUM_STEPS))[1]

    return run


def _multi_agent_rollout(env: MultiAgentAdapter, params):
    """Jitted ``key -> (obs0, (obs, rewards, dones, step, masks))``, dicts of `[N, ...]` / `[T, N, ...]`."""
    with_masks = all(isinstance(env.action_space(params, agent), spaces.Discrete) for agent in env.agents)

    @jax.jit
    def run(key):
        key_reset, key_steps = jax.random.split(key)
        obs0, state = jax.vmap(env.reset, (0, None))(jax.random.split(key_reset, NUM_ENVS), params)

        def body(state, key):
            key_act, key_step = jax.random.split(key)
            actions = {
                agent: jax.vmap(env.action_space(params, agent).sample)(
                    jax.random.split(jax.random.fold_in(key_act, i), NUM_ENVS)
                )
                for i, agent in enumerate(env.agents)
            }
            obs, state, rewards, dones, _ = jax.vmap(env.step, (0, 0, 0, None))(
                jax.random.split(key_step, NUM_ENVS), state, actions, params
            )
            step = getattr(state, "step", jnp.full(NUM_ENVS, -1, jnp.int32))
            masks = jax.vmap(env.avail_actions)(state) if with_masks else {}
            return state, (obs, rewards, dones, step, masks)

        return obs0, jax.lax.scan(body, state, jax.random.split(key_steps, 4 * NUM_STEPS + 2))[1]

    return run


def _assert_same(a, b) -> None:
    jax.tree.map(np.testing.assert_array_equal, a, b)


def _check_single_agent(env, params) -> None:
    short = hasattr(params, "max_steps_in_episode")
    if short:  # short episodes, so every env auto-resets within the rollout (keep the field's type)
        params = params.replace(max_steps_in_episode=type(params.max_steps_in_episode)(2))
    run = _single_agent_rollout(env, params)
    out = run(jax.random.key(0))
    obs0, (obs, reward, terminated, truncated, final_obs, time) = out
    space = env.observation_space(params)
    assert jnp.dtype(space.dtype) == jnp.float32
    low, high = (np.broadcast_to(np.asarray(b, np.float32), space.shape) for b in (space.low, space.high))
    for o, lead in ((obs0, (NUM_ENVS,)), (obs, (NUM_STEPS, NUM_ENVS)), (final_obs, (NUM_STEPS, NUM_ENVS))):
        assert o.shape == lead + tuple(space.shape) and o.dtype == jnp.float32
        assert np.all(np.isfinite(o)) and np.all((o >= low) & (o <= high))
    assert reward.shape == (NUM_STEPS, NUM_ENVS) and reward.dtype == jnp.float32
    assert terminated.dtype == jnp.bool_ and truncated.dtype == jnp.bool_
    done = np.asarray(terminated | truncated)
    if short:  # episodes last <= 2 steps, so they keep ending
        assert np.all(done[:-1] | done[1:])
    if np.all(np.asarray(time) >= 0):  # the state counts steps: it restarts at 0 on auto-reset
        assert np.all(np.asarray(time)[done] == 0) and np.all(np.asarray(time)[~done] >= 1)
    _assert_same(out, run(jax.random.key(0)))


def _check_multi_agent(env: MultiAgentAdapter, params) -> None:
    run = _multi_agent_rollout(env, params)
    out = run(jax.random.key(0))
    obs0, (obs, rewards, dones, step, masks) = out
    assert set(env.agents) <= set(obs0) and set(env.agents) <= set(rewards)
    assert set(env.agents) | {"__all__"} <= set(dones)
    for key, value in obs.items():
        shape = tuple(env.observation_space(params, key).shape)
        assert obs0[key].shape == (NUM_ENVS, *shape) and obs0[key].dtype == jnp.float32
        assert value.shape[1:] == (NUM_ENVS, *shape) and value.dtype == jnp.float32
    for value in rewards.values():
        assert value.shape[1:] == (NUM_ENVS,) and value.dtype == jnp.float32
    for value in dones.values():
        assert value.shape[1:] == (NUM_ENVS,) and value.dtype == jnp.bool_
    for agent, mask in masks.items():
        assert mask.dtype == jnp.bool_ and mask.shape[-1] == env.action_space(params, agent).n
        assert np.all(np.asarray(mask).any(-1))
    episode_end = np.asarray(dones["__all__"])
    if episode_end.any() and np.all(np.asarray(step) >= 0):
        assert np.all(np.asarray(step)[episode_end] == 0)
    _assert_same(out, run(jax.random.key(0)))


@pytest.mark.parametrize("name", [_param(n) for n in registered_names() if n not in NEEDS_NETWORK])
def test_env_contract(name):
    """jits, vmaps over 64 envs, auto-resets, has the declared shapes/dtypes, deterministic per key."""
    env, params = envs.make(name)
    if isinstance(env, MultiAgentAdapter):
        _check_multi_agent(env, params)
    else:
        _check_single_agent(env, params)


def test_names_cover_all_families():
    names = registered_names()
    assert len(names) == len(set(names))
    assert {"CartPole-v1", "brax/ant", "jaxmarl/MPE_simple_spread_v3"} <= set(names)
    assert set(gymnax_names()) <= set(names)
    assert not any(name.startswith("gymnax/") for name in names)  # aliases are not listed


def test_popgym_and_state_tracking_names_and_aliases():
    assert set(POPGYM_ENVS) | set(STATE_TRACKING_ENVS) <= set(registered_names())
    for alias, name in {**POPGYM_ALIASES, **STATE_TRACKING_ALIASES}.items():
        env, params = envs.make(alias)
        canonical_env, canonical_params = envs.make(name)
        assert type(env) is type(canonical_env)
        _assert_same(params, canonical_params)


def test_meta_task_names_and_alias():
    assert "MetaStatelessCartPole" in registered_names() and "NoisyStatelessMetaCartPole" not in registered_names()
    env, params = envs.make("NoisyStatelessMetaCartPole", episodes_per_trial=3)
    assert type(env) is type(envs.make("MetaStatelessCartPole")[0]) and params.episodes_per_trial == 3


def test_gymnax_prefix_alias():
    env, params = envs.make("gymnax/CartPole-v1", max_steps_in_episode=17)
    assert env.name == envs.make("CartPole-v1")[0].name
    assert params.max_steps_in_episode == 17


def test_kwargs_reach_constructor_and_params():
    env, params = envs.make("Catch-bsuite", rows=6, max_steps_in_episode=9)
    assert env.observation_space(params).shape == (6, 5) and params.max_steps_in_episode == 9
    env, params = envs.make("brax/inverted_pendulum", backend="spring", max_steps_in_episode=5)
    assert env.unwrapped.backend == "spring" and params.max_steps_in_episode == 5
    env, _ = envs.make("jaxmarl/MPE_simple_spread_v3", num_agents=2, max_steps=7)
    assert env.num_agents == 2 and env.unwrapped.max_steps == 7


@pytest.mark.parametrize("name", ["CartPole-v1", "brax/inverted_pendulum", "jaxmarl/MPE_simple_v3"])
def test_unknown_kwargs_error_lists_accepted(name):
    with pytest.raises(ValueError, match=r"unknown kwargs \['not_a_kwarg'\]; accepted"):
        envs.make(name, not_a_kwarg=1)


@pytest.mark.parametrize("name", ["CartPol-v1", "brax/antt", "jaxmarl/MPE_simple_sprad_v3"])
def test_unknown_name_suggests_close_matches(name):
    with pytest.raises(ValueError, match="unknown env") as error:
        envs.make(name)
    fixed = {"CartPol-v1": "CartPole-v1", "brax/antt": "brax/ant"}.get(name, "jaxmarl/MPE_simple_spread_v3")
    assert fixed in str(error.value)


def test_bad_name_type():
    with pytest.raises(ValueError, match="string"):
        envs.make(3)


def test_register_custom_env_and_reject_duplicates():
    def factory(**kwargs):
        return envs.make("CartPole-v1", **kwargs)

    envs.register("tests/MyCartPole", factory)
    env, params = envs.make("tests/MyCartPole", max_steps_in_episode=3)
    assert "tests/MyCartPole" in registered_names() and params.max_steps_in_episode == 3
    for taken in ("tests/MyCartPole", "CartPole-v1", "gymnax/CartPole-v1"):
        with pytest.raises(ValueError, match="already registered"):
            envs.register(taken, factory)


def test_make_from_threads_while_families_load(monkeypatch):
    """Lazy family loading is thread-safe: 8 threads making envs of two not-yet-loaded families all succeed."""
    from concurrent.futures import ThreadPoolExecutor

    from ssmrl.envs import registry

    for name in ("_FACTORIES", "_ALIASES"):
        monkeypatch.setattr(registry, name, {})
    monkeypatch.setattr(registry, "_LOADED", set())

    def slow(load):  # widen the window in which other threads could see a half-loaded family
        return lambda: (time.sleep(0.1), load())

    monkeypatch.setattr(registry, "_LOADERS", {k: slow(load) for k, load in registry._LOADERS.items()})
    names = ["RepeatPrevious-Easy", "CartPole-v1"] * 4
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda name: envs.make(name)[0], names))
    assert len(made) == 8 and registry._LOADED == {"gymnax", "popgym"}

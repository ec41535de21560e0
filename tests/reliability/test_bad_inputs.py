"""Envs and cores on bad input (issue 19, point 6): actions outside the action space are reported
(`CheckActions`, and the CLI's evaluate refuses them), a sequence whose batch dims differ from the carry's is one
clear error naming both shapes, and under `jax_enable_x64` every core still initialises and runs in float32.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces
from jax.experimental import checkify

import ssmrl.envs as envs
from ssmrl.agents.env_stack import EnvConfig
from ssmrl.agents.evaluate import first_episode_returns, make_evaluator
from ssmrl.agents.ppo import PPOConfig, make_ppo
from ssmrl.envs.wrappers import CheckActions, VecEnv, invalid_actions
from ssmrl.ssm import CORES, make_core
from tests.reliability.test_resets_nan import TINY

# ---- actions


@pytest.mark.parametrize("name", ["MineSweeper-Easy", "Battleship-Easy", "CartPole-v1", "StatelessCartPoleEasy",
                                  "Pendulum-v1"])
def test_check_actions_flags_bad_actions_under_jit_and_vmap(name):
    env, params = envs.make(name)
    env = VecEnv(CheckActions(env), 4)
    space = env.action_space(params)
    if isinstance(space, spaces.Discrete):  # in range at both ends, then one past the end and negative
        actions = jnp.array([0, space.n - 1, space.n, -1], jnp.int32)
    else:
        low, high = (float(np.ravel(bound)[0]) for bound in (space.low, space.high))
        actions = jnp.array([[low], [high], [np.nan], [99.0]], jnp.float32)
    _, state = env.reset(jax.random.key(0), params)
    info = jax.jit(env.step)(jax.random.key(1), state, actions, params)[-1]
    np.testing.assert_array_equal(info["invalid_action"], [False, False, True, True])


def test_invalid_actions_of_floats_shapes_and_nested_spaces():
    discrete = spaces.Discrete(3)
    bad = invalid_actions(discrete, jnp.array([0.0, 2.0, 1.5, np.nan, np.inf, 3.0]))
    np.testing.assert_array_equal(bad, [False, False, True, True, True, True])
    box = spaces.Box(-1.0, 1.0, (2,), jnp.float32)
    np.testing.assert_array_equal(invalid_actions(box, jnp.array([[0.0, 1.0], [0.0, 1.1]])), [False, True])
    nested = spaces.Tuple([discrete, box])
    assert bool(invalid_actions(nested, (jnp.int32(1), jnp.array([0.0, -2.0]))))
    with pytest.raises(ValueError, match=r"action of shape \(3,\) does not end in the Box action space's shape \(2,\)"):
        invalid_actions(box, jnp.zeros(3))


def test_check_actions_checkify_names_the_action():
    env, params = envs.make("MineSweeper-Easy")
    env = VecEnv(CheckActions(env, checkify=True), 3)
    _, state = env.reset(jax.random.key(0), params)
    step = jax.jit(checkify.checkify(env.step))
    err, _ = step(jax.random.key(1), state, jnp.array([1, 99, 2], jnp.int32), params)
    with pytest.raises(checkify.JaxRuntimeError, match=r"invalid action 99 for the action space Discrete\(16"):
        err.throw()
    err, _ = step(jax.random.key(1), state, jnp.array([1, 15, 2], jnp.int32), params)
    err.throw()  # all valid: no error


def test_evaluate_refuses_actions_outside_the_action_space():
    config = PPOConfig(env=EnvConfig(name="Pendulum-v1", num_envs=2), core="mlp", core_kwargs={"features": 4},
                       hidden=4, num_steps=4, num_minibatches=1, update_epochs=1, total_timesteps=8)
    params = jax.jit(make_ppo(config).init)(jax.random.key(0)).params
    evaluator = make_evaluator(config, 2, greedy=True)
    with pytest.raises(ValueError, match="had not finished"):  # good parameters: only the step bound
        first_episode_returns(evaluator, params, jax.random.key(1), max_steps=2)
    nan_params = jax.tree.map(lambda p: jnp.full_like(p, np.nan), params)
    with pytest.raises(ValueError, match=r"4 actions outside the env's action space Box\(low=-2.0, high=2.0"):
        first_episode_returns(evaluator, nan_params, jax.random.key(1), max_steps=2)


# ---- cores


@pytest.mark.parametrize("name", sorted(CORES))
def test_core_names_both_shapes_when_x_and_carry_batches_differ(name):
    core = make_core(name, **TINY[name])
    carry = core.initialize_carry((2,))
    for x in (jnp.zeros((5, 3)), jnp.zeros((5, 4, 3))):  # unbatched, and another batch size
        shape = ", ".join(map(str, x.shape))
        with pytest.raises(ValueError, match=rf"carry of shape.* does not match x of shape \({shape}\)"):
            core.init(jax.random.key(0), carry, x, jnp.zeros(x.shape[:-1], bool))


@pytest.mark.parametrize("name", sorted(CORES))
def test_core_runs_in_float32_under_x64(name):
    with jax.enable_x64():
        core = make_core(name, **TINY[name])
        x = jax.random.normal(jax.random.key(0), (6, 2, 3), jnp.float32)
        resets = jnp.zeros((6, 2), bool).at[2, 0].set(True)
        carry = core.initialize_carry((2,))
        params = jax.jit(core.init)(jax.random.key(1), carry, x, resets)  # jitted: one compile, not one per op
        assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}, name
        for steps in (6, 1):  # sequence, then step mode
            new_carry, y = jax.jit(core.apply)(params, carry, x[:steps], resets[:steps])
            assert y.dtype == jnp.float32 and np.isfinite(np.asarray(y)).all()
            assert [c.dtype for c in jax.tree.leaves(new_carry)] == [c.dtype for c in jax.tree.leaves(carry)]

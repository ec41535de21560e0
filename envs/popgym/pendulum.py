"""POPGym's PositionOnlyPendulum and NoisyPositionOnlyPendulum (gymnasium Pendulum-v1 physics)."""

import chex
import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

from ssmrl.envs.popgym.cards import check_int, difficulty_registry
from ssmrl.envs.popgym.cartpole import NOISY_LEVELS, check_noise_sigma, noisy_observation

# Largest per-step cost of Pendulum-v1: pi^2 + 0.1 * max_speed^2 + 0.001 * max_torque^2 (POPGym's constant).
MAX_COST = 16.2736044


@chex.dataclass(frozen=True)
class PendulumState:
    theta: jax.Array  # 0 is upright
    theta_dot: jax.Array
    time: jax.Array


@chex.dataclass(frozen=True)
class PendulumParams:
    max_steps_in_episode: int = 200
    noise_sigma: float = 0.0
    max_speed: float = 8.0
    max_torque: float = 2.0
    dt: float = 0.05
    g: float = 10.0
    m: float = 1.0
    l: float = 1.0  # noqa: E741 (gymnasium's name)


def angle_normalize(theta: jax.Array) -> jax.Array:
    """Wrap an angle to [-pi, pi)."""
    return (theta + jnp.pi) % (2 * jnp.pi) - jnp.pi


class PositionOnlyPendulum(environment.Environment):
    """Pendulum swing-up where the agent sees the pole's angle but not its angular velocity.

    Observation `[2]` float32: `(cos theta, sin theta)`, plus N(0, noise_sigma^2) noise clipped to
    `[-1, 1]` (noise only in the Noisy variant). The agent must infer the angular velocity from successive
    observations, swing the pendulum up and balance it upright (theta = 0). Action: Box `[1]` in
    `[-2, 2]`, the torque (clipped). Dynamics, cost and the initial state (theta ~ U(-pi, pi),
    theta_dot ~ U(-1, 1)) are gymnasium's Pendulum-v1 (g = 10).

    Episode length: 200 / 150 / 100 steps at Easy / Medium / Hard (less time to swing up), no early end.
    Reward (POPGym's scaling): the Pendulum-v1 reward `-cost` in `[-16.27, 0]` mapped linearly to
    `[-1, 1]` and divided by the episode length, so the return lies in `[-1, 1]`.

    Expected return: optimal at least 0.91 / 0.88 / 0.82 at Easy / Medium / Hard (std 0.055 / 0.074 /
    0.111; measured over 1024 episodes of an energy-shaping swing-up + linear balance controller on the
    true state, a lower bound on the optimum that matches the best Pendulum-v1 returns of about -145).
    Uniformly random torques (measured over 4096 episodes): 0.244 / 0.242 / 0.241 (std 0.18).
    """

    def __init__(self, max_episode_length: int = 200, noise_sigma: float = 0.0):
        super().__init__()
        self._default_params = PendulumParams(
            max_steps_in_episode=check_int("max_episode_length", max_episode_length, 1),
            noise_sigma=check_noise_sigma(noise_sigma),
        )

    @property
    def default_params(self) -> PendulumParams:
        return self._default_params

    def step_env(
        self, key: jax.Array, state: PendulumState, action: jax.Array, params: PendulumParams
    ) -> tuple[jax.Array, PendulumState, jax.Array, jax.Array, dict]:
        torque = jnp.clip(jnp.reshape(action, ()), -params.max_torque, params.max_torque)
        cost = angle_normalize(state.theta) ** 2 + 0.1 * state.theta_dot**2 + 0.001 * torque**2
        reward = (1.0 - 2.0 * cost / MAX_COST) / params.max_steps_in_episode
        theta_dot = state.theta_dot + params.dt * (
            3 * params.g / (2 * params.l) * jnp.sin(state.theta) + 3.0 / (params.m * params.l**2) * torque
        )
        theta_dot = jnp.clip(theta_dot, -params.max_speed, params.max_speed)
        new_state = PendulumState(theta=state.theta + params.dt * theta_dot, theta_dot=theta_dot, time=state.time + 1)
        return (
            self.get_obs(new_state, params, key),
            new_state,
            reward.astype(jnp.float32),
            jnp.bool_(False),
            {},
        )

    def reset_env(self, key: jax.Array, params: PendulumParams) -> tuple[jax.Array, PendulumState]:
        key_state, key_obs = jax.random.split(key)
        theta, theta_dot = jax.random.uniform(
            key_state, (2,), minval=jnp.array([-jnp.pi, -1.0]), maxval=jnp.array([jnp.pi, 1.0])
        )
        state = PendulumState(theta=theta, theta_dot=theta_dot, time=jnp.int32(0))
        return self.get_obs(state, params, key_obs), state

    def get_obs(self, state: PendulumState, params: PendulumParams | None = None, key=None) -> jax.Array:
        """`[2]` float32 `(cos theta, sin theta)`, noisy when `key` is given and `params.noise_sigma > 0`."""
        params = self.default_params if params is None else params
        clean = jnp.stack([jnp.cos(state.theta), jnp.sin(state.theta)])
        return noisy_observation(key, clean, params.noise_sigma, jnp.ones(2, jnp.float32))

    def is_terminated(self, state: PendulumState, params: PendulumParams) -> jax.Array:
        return jnp.bool_(False)

    @property
    def num_actions(self) -> int:
        return 1

    def action_space(self, params: PendulumParams | None = None) -> spaces.Box:
        params = self.default_params if params is None else params
        return spaces.Box(-params.max_torque, params.max_torque, (1,), jnp.float32)

    def observation_space(self, params: PendulumParams | None = None) -> spaces.Box:
        return spaces.Box(-jnp.ones(2, jnp.float32), jnp.ones(2, jnp.float32), (2,), jnp.float32)

    def state_space(self, params: PendulumParams | None = None) -> spaces.Dict:
        params = self.default_params if params is None else params
        big = jnp.finfo(jnp.float32).max
        return spaces.Dict(
            {
                "theta": spaces.Box(-big, big, (), jnp.float32),
                "theta_dot": spaces.Box(-params.max_speed, params.max_speed, (), jnp.float32),
                "time": spaces.Discrete(self._default_params.max_steps_in_episode),
            }
        )


class NoisyPositionOnlyPendulum(PositionOnlyPendulum):
    """PositionOnlyPendulum whose observations carry Gaussian noise (POPGym's Noisy variant).

    Same as PositionOnlyPendulum except: noise std 0.1 / 0.2 / 0.3 at Easy / Medium / Hard, added to every
    observation (reset included) and clipped to `[-1, 1]`; the episode length is 200 steps at every
    difficulty (POPGym's Noisy classes keep the default length).

    Expected return: optimal at least 0.91 at every difficulty (the true-state controller of
    PositionOnlyPendulum is unaffected by observation noise). Uniformly random torques: 0.244.
    """

    def __init__(self, max_episode_length: int = 200, noise_sigma: float = 0.1):
        super().__init__(max_episode_length=max_episode_length, noise_sigma=noise_sigma)


_PLAIN = difficulty_registry(
    PositionOnlyPendulum,
    {
        "Easy": {"max_episode_length": 200, "noise_sigma": 0.0},
        "Medium": {"max_episode_length": 150, "noise_sigma": 0.0},
        "Hard": {"max_episode_length": 100, "noise_sigma": 0.0},
    },
    port_name="StatelessPendulum",
)
_NOISY = difficulty_registry(
    NoisyPositionOnlyPendulum,
    NOISY_LEVELS,
    port_name="NoisyStatelessPendulum",
)
REGISTRY = {**_PLAIN[0], **_NOISY[0]}
ALIASES = {**_PLAIN[1], **_NOISY[1]}

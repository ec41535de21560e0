"""POPGym's PositionOnlyCartPole and NoisyPositionOnlyCartPole (gymnasium CartPole-v1 physics).

Also holds POPGym's observation noise, shared with the pendulum envs.
"""

import numbers

import chex
import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

from ssmrl.envs.popgym.cards import check_int, difficulty_registry


def check_noise_sigma(noise_sigma: float) -> float:
    """Return `noise_sigma` as float if it is a number >= 0, else raise ValueError."""
    if isinstance(noise_sigma, bool) or not isinstance(noise_sigma, numbers.Real) or not noise_sigma >= 0:
        raise ValueError(f"noise_sigma must be a number >= 0, got {noise_sigma!r}")
    return float(noise_sigma)


def noisy_observation(key: jax.Array | None, clean: jax.Array, sigma, high: jax.Array) -> jax.Array:
    """POPGym's observation noise: `clip(clean + N(0, sigma^2), -high, high)`; no noise when key is None."""
    noise = 0.0 if key is None else sigma * jax.random.normal(key, clean.shape)
    return jnp.clip(clean + noise, -high, high).astype(jnp.float32)


@chex.dataclass(frozen=True)
class CartPoleState:
    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


@chex.dataclass(frozen=True)
class CartPoleParams:
    max_steps_in_episode: int = 200
    noise_sigma: float = 0.0
    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length
    force_mag: float = 10.0
    tau: float = 0.02
    theta_threshold_radians: float = 12 * 2 * jnp.pi / 360
    x_threshold: float = 2.4


class PositionOnlyCartPole(environment.Environment):
    """CartPole where the agent sees only the cart position and the pole angle, not their velocities.

    Observation `[2]` float32: `(x, theta)`, plus N(0, noise_sigma^2) noise clipped to
    `[-2 * x_threshold, 2 * x_threshold] x [-2 * theta_threshold, 2 * theta_threshold]` (noise only in
    the Noisy variant). The agent must infer both velocities from successive observations to keep the pole
    within 12 degrees of upright and the cart within 2.4 of the centre. Actions: Discrete(2), push left
    (0) or right (1) with force 10. Dynamics, thresholds and the initial state U(-0.05, 0.05)^4 are
    gymnasium's CartPole-v1 (Euler integration, tau = 0.02).

    Episode length: 200 / 400 / 600 steps at Easy / Medium / Hard, or less when the pole falls.
    Reward: 1 / max_steps_in_episode per step, including the step on which the pole falls (gymnasium
    rewards that step with 1; POPGym's -1 branch only fires when stepping an env that already terminated,
    which auto-reset rules out). The return is the fraction of the episode survived, in (0, 1].

    Expected return: optimal 1.0 (a linear state-feedback controller on the true state achieves it, see
    the tests). Uniformly random policy (measured over 4096 episodes): 0.112 / 0.056 / 0.037 at
    Easy / Medium / Hard (episode length: mean 22.3 steps, std 11.7).
    """

    def __init__(self, max_episode_length: int = 200, noise_sigma: float = 0.0):
        super().__init__()
        self._default_params = CartPoleParams(
            max_steps_in_episode=check_int("max_episode_length", max_episode_length, 1),
            noise_sigma=check_noise_sigma(noise_sigma),
        )

    @property
    def default_params(self) -> CartPoleParams:
        return self._default_params

    def step_env(
        self, key: jax.Array, state: CartPoleState, action: jax.Array, params: CartPoleParams
    ) -> tuple[jax.Array, CartPoleState, jax.Array, jax.Array, dict]:
        force = jnp.where(action == 1, params.force_mag, -params.force_mag)
        cos, sin = jnp.cos(state.theta), jnp.sin(state.theta)
        total_mass = params.masscart + params.masspole
        polemass_length = params.masspole * params.length
        temp = (force + polemass_length * state.theta_dot**2 * sin) / total_mass
        theta_acc = (params.gravity * sin - cos * temp) / (
            params.length * (4.0 / 3.0 - params.masspole * cos**2 / total_mass)
        )
        x_acc = temp - polemass_length * theta_acc * cos / total_mass
        new_state = CartPoleState(
            x=state.x + params.tau * state.x_dot,
            x_dot=state.x_dot + params.tau * x_acc,
            theta=state.theta + params.tau * state.theta_dot,
            theta_dot=state.theta_dot + params.tau * theta_acc,
            time=state.time + 1,
        )
        reward = jnp.float32(1.0) / params.max_steps_in_episode
        return (
            self.get_obs(new_state, params, key),
            new_state,
            reward.astype(jnp.float32),
            self.is_terminated(new_state, params),
            {},
        )

    def reset_env(self, key: jax.Array, params: CartPoleParams) -> tuple[jax.Array, CartPoleState]:
        key_state, key_obs = jax.random.split(key)
        x, x_dot, theta, theta_dot = jax.random.uniform(key_state, (4,), minval=-0.05, maxval=0.05)
        state = CartPoleState(x=x, x_dot=x_dot, theta=theta, theta_dot=theta_dot, time=jnp.int32(0))
        return self.get_obs(state, params, key_obs), state

    def get_obs(self, state: CartPoleState, params: CartPoleParams | None = None, key=None) -> jax.Array:
        """`[2]` float32 `(x, theta)`, noisy when `key` is given and `params.noise_sigma > 0`."""
        params = self.default_params if params is None else params
        clean = jnp.stack([state.x, state.theta])
        return noisy_observation(key, clean, params.noise_sigma, self.observation_space(params).high)

    def is_terminated(self, state: CartPoleState, params: CartPoleParams) -> jax.Array:
        return (jnp.abs(state.x) > params.x_threshold) | (jnp.abs(state.theta) > params.theta_threshold_radians)

    @property
    def num_actions(self) -> int:
        return 2

    def action_space(self, params: CartPoleParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(2)

    def observation_space(self, params: CartPoleParams | None = None) -> spaces.Box:
        params = self.default_params if params is None else params
        high = 2 * jnp.array([params.x_threshold, params.theta_threshold_radians], jnp.float32)
        return spaces.Box(-high, high, (2,), jnp.float32)

    def state_space(self, params: CartPoleParams | None = None) -> spaces.Dict:
        params = self.default_params if params is None else params
        big = jnp.finfo(jnp.float32).max
        return spaces.Dict(
            {
                "x": spaces.Box(-2 * params.x_threshold, 2 * params.x_threshold, (), jnp.float32),
                "x_dot": spaces.Box(-big, big, (), jnp.float32),
                "theta": spaces.Box(
                    -2 * params.theta_threshold_radians, 2 * params.theta_threshold_radians, (), jnp.float32
                ),
                "theta_dot": spaces.Box(-big, big, (), jnp.float32),
                "time": spaces.Discrete(self._default_params.max_steps_in_episode),
            }
        )


class NoisyPositionOnlyCartPole(PositionOnlyCartPole):
    """PositionOnlyCartPole whose observations carry Gaussian noise (POPGym's Noisy variant).

    Same as PositionOnlyCartPole except: noise std 0.1 / 0.2 / 0.3 at Easy / Medium / Hard, added to every
    observation (reset included) and clipped to the observation space; the episode length is 200 steps at
    every difficulty (POPGym's Noisy classes keep the default length).

    Expected return: optimal 1.0 (the true-state controller is unaffected by observation noise). Uniformly
    random policy (measured over 4096 episodes): 0.112 at every difficulty.
    """

    def __init__(self, max_episode_length: int = 200, noise_sigma: float = 0.1):
        super().__init__(max_episode_length=max_episode_length, noise_sigma=noise_sigma)


# POPGym's Noisy variants keep the default episode length and raise the noise with difficulty.
NOISY_LEVELS = {
    "Easy": {"max_episode_length": 200, "noise_sigma": 0.1},
    "Medium": {"max_episode_length": 200, "noise_sigma": 0.2},
    "Hard": {"max_episode_length": 200, "noise_sigma": 0.3},
}
_PLAIN = difficulty_registry(
    PositionOnlyCartPole,
    {
        "Easy": {"max_episode_length": 200, "noise_sigma": 0.0},
        "Medium": {"max_episode_length": 400, "noise_sigma": 0.0},
        "Hard": {"max_episode_length": 600, "noise_sigma": 0.0},
    },
    port_name="StatelessCartPole",
)
_NOISY = difficulty_registry(
    NoisyPositionOnlyCartPole,
    NOISY_LEVELS,
    port_name="NoisyStatelessCartPole",
)
REGISTRY = {**_PLAIN[0], **_NOISY[0]}
ALIASES = {**_PLAIN[1], **_NOISY[1]}

"""POPGym's MultiarmedBandit: find and exploit the best of a set of Bernoulli bandits within an episode."""

import chex
import jax
import jax.numpy as jnp

from ssmrl.envs.popgym.cards import GameParams, PopGymGame, check_int, difficulty_registry


@chex.dataclass(frozen=True)
class MultiarmedBanditState:
    """payout `[K]` float32 success probability of each arm; time: steps taken."""

    payout: jax.Array
    time: jax.Array


class MultiarmedBandit(PopGymGame):
    """K = ``num_bandits`` arms with success probabilities drawn from U(0, 1) at every reset.

    Observation `[1]`: 1.0 if the last pull succeeded, else 0.0 (also at reset). Action:
    ``Discrete(K)``, the arm to pull.
    Reward: +1/L for a success, -1/L for a failure, L = ``episode_length``, so returns lie in
    [-1, 1].
    Episode: truncated after L steps (never terminates): Easy K=10, L=200; Medium K=20, L=400;
    Hard K=30, L=600.
    Returns (analytic): policy that knows the best arm 2 E[max] - 1 = (K-1)/(K+1) (Easy 0.818,
    Medium 0.905, Hard 0.935), an upper bound on what a learning agent gets; uniformly random
    policy 0.0.
    """

    obs_requires_prev_action = True

    def __init__(self, num_bandits: int = 10, episode_length: int = 200):
        super().__init__()
        self.num_bandits = check_int("num_bandits", num_bandits, 1)
        self.episode_length = check_int("episode_length", episode_length, 1)
        self._set_sizes(obs_dim=1, num_actions=self.num_bandits, max_steps=self.episode_length)

    def reset_env(self, key: jax.Array, params: GameParams) -> tuple[jax.Array, MultiarmedBanditState]:
        state = MultiarmedBanditState(payout=jax.random.uniform(key, (self.num_bandits,)), time=jnp.int32(0))
        return jnp.zeros(1, jnp.float32), state

    def step_env(
        self, key: jax.Array, state: MultiarmedBanditState, action: jax.Array, params: GameParams
    ) -> tuple[jax.Array, MultiarmedBanditState, jax.Array, jax.Array, dict]:
        success = jax.random.uniform(key) < state.payout[action]
        scale = 1.0 / self.episode_length
        reward = jnp.where(success, scale, -scale).astype(jnp.float32)
        state = state.replace(time=state.time + 1)
        return success.astype(jnp.float32)[None], state, reward, jnp.bool_(False), {}


REGISTRY, ALIASES = difficulty_registry(
    MultiarmedBandit,
    {
        "Easy": {"num_bandits": 10, "episode_length": 200},
        "Medium": {"num_bandits": 20, "episode_length": 400},
        "Hard": {"num_bandits": 30, "episode_length": 600},
    },
    port_name="MultiArmedBandit",
)

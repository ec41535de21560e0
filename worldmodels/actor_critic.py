"""Drama's behaviour learner: an actor-critic trained on imagined rollouts (DreamerV3's recipe as the official Drama
code runs it, github.com/realwenlongwang/drama `agents.py`).

Both networks read the model state s = [z, h] (latent and sequence-model output). Actor: 3 x (Dense 256 ->
RMSNorm -> SiLU) -> categorical policy, its input normalised by running moments (clipped to +-10). Critic: 3 x
(Dense 512 -> RMSNorm -> SiLU) -> symlog two-hot over 255 bins, with a slow copy (EMA 0.98 after every step).

On an imagined trajectory s_0..s_H with actions a_0..a_{H-1}, rewards r_t and continues c_t (0 after a predicted
termination), the lambda-returns R_t = r_t + gamma c_t ((1 - lambda) V(s_{t+1}) + lambda R_{t+1}), R_H = V(s_H)
(gamma 0.985, lambda 0.95) give

  critic:  two-hot CE of V(s_t) against sg(R_t), plus the same against the slow critic's returns (weight 1)
  actor:   -log pi(a_t | s_t) sg((R_t - V(s_t)) / max(1, S)) - 3e-4 H[pi(. | s_t)]   (REINFORCE, discrete actions)

with S the EMA (decay 0.99) of the 95th minus the 5th percentile of the returns (DreamerV3's return normalisation).
One LaProp optimiser (lr 4e-5, eps 1e-20, clip 100, 1000 warmup steps) updates both networks.

`BehaviourConfig.dtype="bfloat16"` is the official code's `Use_amp: True` (bfloat16 autocast): every Dense of the
actor and the critic (output layers included) computes in bfloat16, parameters, the optimiser and RMSNorm
statistics stay float32, and the policy and value logits are cast to float32 before the distribution, the two-hot
loss and the returns.

Deviations: the official code bootstraps R_t with V(s_t) (STORM's form) where DreamerV3 and this module use
V(s_{t+1}); the running input moments are updated once per training step from the imagined states (the official
code updates them on every forward pass); the policy's output layer starts at orthogonal scale 0.01
(`ssmrl.rl.heads.CategoricalHead`; the official code uses 0.001); hidden layers use flax's default initialisation.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssmrl.rl.heads import CategoricalHead
from ssmrl.rl.networks import dense
from ssmrl.rl.returns import gae
from ssmrl.worldmodels.drama import MLP, compute_dtype
from ssmrl.worldmodels.laprop import drama_optimizer
from ssmrl.worldmodels.twohot import twohot_loss, twohot_mean


@dataclasses.dataclass(frozen=True)
class BehaviourConfig:
    """The actor-critic and its imagination (official Drama values; `imagine_*`: 1024 trajectories of 16 steps,
    each after a context of 8 real steps)."""

    actor_units: int = 256
    critic_units: int = 512
    layers: int = 3
    gamma: float = 0.985
    lam: float = 0.95
    entropy_coef: float = 3e-4
    lr: float = 4e-5
    eps: float = 1e-20
    grad_clip: float = 100.0
    warmup_steps: int = 1000
    slow_critic_decay: float = 0.98
    slow_critic_reg: float = 1.0
    return_decay: float = 0.99
    return_low: float = 0.05
    return_high: float = 0.95
    input_norm: bool = True
    imagine_batch: int = 1024
    imagine_context: int = 8
    imagine_horizon: int = 16
    dtype: str = "float32"  # or "bfloat16": mixed precision (see the module docstring)


class Actor(nn.Module):
    """Model states `[..., F]` -> categorical policy over `num_actions` (distrax, float32 logits), computed in
    `dtype`."""

    num_actions: int
    units: int = 256
    layers: int = 3
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, feat):
        return CategoricalHead(self.num_actions, self.dtype)(MLP(self.units, self.layers, self.dtype)(feat))


class Critic(nn.Module):
    """Model states `[..., F]` -> float32 value logits `[..., num_bins]` (symlog two-hot), computed in `dtype`."""

    units: int = 512
    layers: int = 3
    num_bins: int = 255
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, feat):
        logits = dense(self.num_bins, 0.001, dtype=self.dtype)(MLP(self.units, self.layers, self.dtype)(feat))
        return logits.astype(jnp.float32)


@chex.dataclass(frozen=True)
class Moments:
    """Running mean and variance `[F]` of the actor's inputs over `count` samples."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array

    @classmethod
    def start(cls, dim: int) -> Moments:
        return cls(mean=jnp.zeros(dim), var=jnp.ones(dim), count=jnp.asarray(1e-4, jnp.float32))

    def update(self, x) -> Moments:
        """Merged with a batch x `[..., F]` (Chan et al.'s parallel update)."""
        x = x.reshape((-1, x.shape[-1]))
        n = x.shape[0]
        mean, var = x.mean(0), x.var(0)
        total = self.count + n
        delta = mean - self.mean
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        return Moments(mean=self.mean + delta * n / total, var=m2 / total, count=total)

    def normalize(self, x, clip: float = 10.0):
        return jnp.clip((x - self.mean) / jnp.sqrt(self.var + 1e-8), -clip, clip)


@chex.dataclass(frozen=True)
class BehaviourState:
    """params {"actor", "critic"}, the slow critic's params, the optimiser state, the return-range EMAs (scalars)
    and the actor's input moments."""

    params: Any
    slow_critic: Any
    opt_state: Any
    return_low: jax.Array
    return_high: jax.Array
    moments: Moments


def lambda_returns(rewards, continues, values, gamma: float, lam: float):
    """R_t = r_t + gamma c_t ((1 - lam) V_{t+1} + lam R_{t+1}), R_H = V_H: rewards, continues `[H, B]`, values
    `[H + 1, B]` -> `[H, B]`. These are GAE's value targets (advantages + values) with dones = 1 - continues."""
    return gae(rewards, values[:-1], 1.0 - continues, values[-1], gamma, lam)[1]


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """The actor-critic of a config: `init`, `policy` (acting) and `update` (one training step on an imagined
    batch), all pure."""

    config: BehaviourConfig
    actor: Actor
    critic: Critic
    bins: jax.Array
    optimizer: optax.GradientTransformation

    def init(self, key, feat_dim: int) -> BehaviourState:
        k_actor, k_critic = jax.random.split(key)
        feat = jnp.zeros((1, feat_dim))
        params = {"actor": self.actor.init(k_actor, feat), "critic": self.critic.init(k_critic, feat)}
        zero = jnp.zeros((), jnp.float32)
        return BehaviourState(params=params, slow_critic=params["critic"], opt_state=self.optimizer.init(params),
                              return_low=zero, return_high=zero, moments=Moments.start(feat_dim))

    def policy(self, params, moments: Moments, feat):
        """The policy at model states `[..., F]` (inputs normalised by `moments` when configured)."""
        return self.actor.apply(params["actor"], moments.normalize(feat) if self.config.input_norm else feat)

    def loss(self, params, state: BehaviourState, traj: dict):
        """Actor-critic loss on an imagined batch (feat `[H + 1, B, F]`, action, reward, cont `[H, B]`);
        returns (loss, (new return_low, new return_high, float32 terms))."""
        c, sg = self.config, jax.lax.stop_gradient
        feat = traj["feat"]
        dist = self.policy(params, state.moments, feat[:-1])
        log_prob, entropy = dist.log_prob(traj["action"]), dist.entropy().mean()
        logits = self.critic.apply(params["critic"], feat)
        values = twohot_mean(logits, self.bins)
        slow_values = twohot_mean(self.critic.apply(state.slow_critic, feat), self.bins)
        returns = sg(lambda_returns(traj["reward"], traj["cont"], values, c.gamma, c.lam))
        slow_returns = sg(lambda_returns(traj["reward"], traj["cont"], slow_values, c.gamma, c.lam))
        value_loss = twohot_loss(logits[:-1], returns, self.bins).mean()
        slow_loss = twohot_loss(logits[:-1], slow_returns, self.bins).mean()
        low = c.return_decay * state.return_low + (1 - c.return_decay) * jnp.quantile(returns, c.return_low)
        high = c.return_decay * state.return_high + (1 - c.return_decay) * jnp.quantile(returns, c.return_high)
        scale = jnp.maximum(1.0, high - low)
        advantage = sg((returns - values[:-1]) / scale)
        policy_loss = -jnp.mean(log_prob * advantage)
        loss = policy_loss + value_loss + c.slow_critic_reg * slow_loss - c.entropy_coef * entropy
        terms = dict(ac_loss=loss, policy_loss=policy_loss, value_loss=value_loss, slow_value_loss=slow_loss,
                     entropy=entropy, return_scale=scale, imagined_return=returns[0].mean(),
                     imagined_reward=traj["reward"].mean())
        return loss, (low, high, {k: v.astype(jnp.float32) for k, v in terms.items()})

    def update(self, state: BehaviourState, traj: dict):
        """One optimiser step on an imagined batch (see `loss`), then the slow critic's EMA step."""
        if self.config.input_norm:
            state = state.replace(moments=state.moments.update(traj["feat"]))
        grads, (low, high, terms) = jax.grad(self.loss, has_aux=True)(state.params, state, traj)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = self.config.slow_critic_decay
        slow = jax.tree.map(lambda s, p: decay * s + (1 - decay) * p, state.slow_critic, params["critic"])
        terms["ac_grad_norm"] = optax.global_norm(grads).astype(jnp.float32)
        state = state.replace(params=params, slow_critic=slow, opt_state=opt_state, return_low=low, return_high=high)
        return state, terms


def make_behaviour(config: BehaviourConfig, num_actions: int, bins) -> Behaviour:
    """The actor-critic for `num_actions` discrete actions, its critic over the two-hot `bins`."""
    for name in ("actor_units", "critic_units", "layers", "imagine_batch", "imagine_context", "imagine_horizon"):
        if getattr(config, name) < 1:
            raise ValueError(f"behaviour.{name} must be >= 1, got {getattr(config, name)}")
    if not (0 <= config.return_low < config.return_high <= 1):
        raise ValueError(f"need 0 <= return_low < return_high <= 1, got {config.return_low}, {config.return_high}")
    dtype = compute_dtype(config.dtype, "behaviour.dtype")
    return Behaviour(
        config=config, actor=Actor(num_actions, config.actor_units, config.layers, dtype),
        critic=Critic(config.critic_units, config.layers, bins.shape[0], dtype), bins=bins,
        optimizer=drama_optimizer(config.lr, config.eps, config.grad_clip, config.warmup_steps),
    )

"""The Drama world model (Wang, Dusparic, Shi, Zhang, Cahill, "Drama: Mamba-Enabled Model-Based Reinforcement
Learning Is Sample and Parameter Efficient", ICLR 2025): discrete latents and a Mamba-2 sequence model.

Per time step t of sequences `[T, B]` (o_t the observation, a_t the action taken from it):

  posterior   z_t ~ q(z | o_t)                 encoder -> K categoricals of C classes (1% uniform mix),
                                               sampled one-hot with straight-through gradients
  sequence    h_t = f(h_{t-1}, [z_t, a_t])     stem Dense -> RMSNorm -> SiLU, then the backbone
                                               (Mamba-2 by default; any `ssmrl.worldmodels.s4wm.BACKBONES` core)
  dynamics    z^_{t+1} ~ p(z | h_t)            Dense -> K x C logits (1% uniform mix)
  decoder     o^_t = D(z_t)                    from the posterior latent only (the paper's figure)
  reward      r^_t = R(h_t)                    symlog two-hot over 255 bins (`ssmrl.worldmodels.twohot`)
  termination e^_t = E(h_t)                    Bernoulli logit

Resets (o_t starts an episode) zero the backbone state before step t, so episodes in one sequence are
independent. Loss (per step, means over [T, B]): sum-of-squares reconstruction + reward two-hot cross-entropy +
termination cross-entropy + dyn * max(free, KL(sg q_{t+1} || p_t)) + rep * max(free, KL(q_{t+1} || sg p_t)),
KL pairs crossing an episode start left out; dyn = 1, rep = 0.1, free = 1 nat, the free bits applied to the
batch-mean KL (the official code's form; DreamerV3 applies them per step and weighs dyn 0.5).

Sizes (official config `config_files/train.yaml`): 32 x 32 latents, hidden width 512, 2 Mamba-2 layers with state
size 16, CNN depth 16 with multipliers (1, 2, 3, 4, 4) and 5x5 kernels (first layer stride 1, the others 2),
reward and termination heads of one 256-unit layer; the reward head's output layer starts at zero (DreamerV3's
choice, so early imagined rewards are 0). Adaptations (ours): images whose side is not a multiple of
2^(levels) are zero-padded for the encoder and the decoder's output is cropped back (MinAtar's 10x10); the conv
layers use RMSNorm over channels (the config's `Norm: rms`; the official code's convs use BatchNorm); vector
observations (POPGym) use an MLP encoder and decoder (the paper has only images); our Mamba-2 core adds its own
input Dense after the stem.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssmrl.worldmodels.s4wm import make_backbone
from ssmrl.worldmodels.twohot import twohot_bins, twohot_loss


class MLP(nn.Module):
    """x `[..., D]` -> `[..., units]`: `layers` x (Dense -> RMSNorm -> SiLU)."""

    units: int
    layers: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.layers):
            x = nn.silu(nn.RMSNorm()(nn.Dense(self.units)(x)))
        return x


def padded_side(side: int, levels: int) -> int:
    """The image side rounded up to a multiple of 2^levels (what `levels` stride-2 convs halve exactly)."""
    step = 2**levels
    return math.ceil(side / step) * step


class ConvEncoder(nn.Module):
    """Images `[..., S, S, C]` in [0, 1] -> features `[..., F]`: conv (stride 1), then len(mults) - 1 stride-2
    convs, each with RMSNorm and SiLU; channels depth * mults[i]."""

    depth: int = 16
    mults: tuple[int, ...] = (1, 2, 3, 4, 4)
    kernel: int = 5

    @nn.compact
    def __call__(self, obs):
        lead, (height, width, _) = obs.shape[:-3], obs.shape[-3:]
        side = padded_side(max(height, width), len(self.mults) - 1)
        x = obs.reshape((-1, *obs.shape[-3:]))
        x = jnp.pad(x, ((0, 0), (0, side - height), (0, side - width), (0, 0)))
        for i, mult in enumerate(self.mults):
            x = nn.Conv(self.depth * mult, (self.kernel, self.kernel), strides=1 if i == 0 else 2, padding="SAME")(x)
            x = nn.silu(nn.RMSNorm()(x))
        return x.reshape((*lead, -1))


class ConvDecoder(nn.Module):
    """Latents `[..., Z]` -> images `[..., *obs_shape]` in (0, 1): the encoder mirrored (Dense to the smallest
    map, stride-2 transposed convs, a stride-1 transposed conv to the channels, crop, sigmoid)."""

    obs_shape: tuple[int, ...]
    depth: int = 16
    mults: tuple[int, ...] = (1, 2, 3, 4, 4)
    kernel: int = 5

    @nn.compact
    def __call__(self, z):
        height, width, channels = self.obs_shape
        levels = len(self.mults) - 1
        small = padded_side(max(height, width), levels) // 2**levels
        k = (self.kernel, self.kernel)
        x = nn.Dense(small * small * self.depth * self.mults[-1])(z)
        x = nn.silu(nn.RMSNorm()(x.reshape((-1, small, small, self.depth * self.mults[-1]))))
        for mult in reversed(self.mults[:-1]):
            x = nn.silu(nn.RMSNorm()(nn.ConvTranspose(self.depth * mult, k, strides=(2, 2), padding="SAME")(x)))
        x = nn.ConvTranspose(channels, k, strides=(1, 1), padding="SAME")(x)[:, :height, :width]
        return nn.sigmoid(x).reshape((*z.shape[:-1], *self.obs_shape))


class VectorDecoder(nn.Module):
    """Latents `[..., Z]` -> vector observations `[..., D]`: MLP then a linear output."""

    obs_dim: int
    units: int = 256
    layers: int = 2

    @nn.compact
    def __call__(self, z):
        return nn.Dense(self.obs_dim)(MLP(self.units, self.layers)(z))


def unimix_logits(logits, mix: float):
    """Logits of (1 - mix) softmax(logits) + mix / classes over the last axis (DreamerV3's uniform mix)."""
    if mix == 0.0:
        return jax.nn.log_softmax(logits, -1)
    probs = (1.0 - mix) * jax.nn.softmax(logits, -1) + mix / logits.shape[-1]
    return jnp.log(probs)


def sample_latent(logits, key):
    """One-hot samples of K categoricals, logits `[..., K, C]` -> flat `[..., K * C]`, with straight-through
    gradients (sample + probs - sg(probs))."""
    probs = jax.nn.softmax(logits, -1)
    onehot = jax.nn.one_hot(jax.random.categorical(key, logits), logits.shape[-1])
    sample = onehot + probs - jax.lax.stop_gradient(probs)
    return sample.reshape((*logits.shape[:-2], -1))


def categorical_kl(p_logits, q_logits):
    """KL(p || q) of K categoricals `[..., K, C]`, summed over K: `[...]`."""
    log_p, log_q = jax.nn.log_softmax(p_logits, -1), jax.nn.log_softmax(q_logits, -1)
    return jnp.sum(jnp.exp(log_p) * (log_p - log_q), (-2, -1))


@dataclasses.dataclass(frozen=True)
class DramaModelConfig:
    """The world model's architecture; official Drama values (config_files/train.yaml). core_kwargs: backbone
    options (`ssmrl.ssm.make_core` names). The trainer's `ModelConfig` extends it with the training settings."""

    backbone: str = "mamba2"
    core_kwargs: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"d_model": 512, "n_layers": 2, "d_state": 16, "head_dim": 64, "expand": 2}
    )
    hidden: int = 512
    num_latents: int = 32
    num_classes: int = 32
    unimix: float = 0.01
    cnn_depth: int = 16
    cnn_mults: tuple[int, ...] = (1, 2, 3, 4, 4)
    cnn_kernel: int = 5
    mlp_units: int = 256
    mlp_layers: int = 2
    head_units: int = 256
    head_layers: int = 1
    num_bins: int = 255


class DramaWorldModel(nn.Module):
    """Drama's world model (see the module docstring). obs float `[..., *obs_shape]` (images in [0, 1]), actions
    int32; `config` sets the architecture. Methods (via `apply(..., method=...)`): `observe` (sequence mode),
    `imagine_step` (step mode), and the parts `posterior`, `sequence`, `prior`, `decode`, `heads`."""

    obs_shape: tuple[int, ...]
    num_actions: int
    config: DramaModelConfig = DramaModelConfig()

    @property
    def is_image(self) -> bool:
        return len(self.obs_shape) == 3

    def setup(self):
        c = self.config
        if len(self.obs_shape) not in (1, 3):
            raise ValueError(f"Drama takes vector [D] or image [H, W, C] observations, got shape {self.obs_shape}")
        self.core = make_backbone(c.backbone, **dict(c.core_kwargs))
        if self.is_image:
            self.encoder = ConvEncoder(c.cnn_depth, c.cnn_mults, c.cnn_kernel)
            self.decoder = ConvDecoder(self.obs_shape, c.cnn_depth, c.cnn_mults, c.cnn_kernel)
        else:
            self.encoder = MLP(c.mlp_units, c.mlp_layers)
            self.decoder = VectorDecoder(self.obs_shape[0], c.mlp_units, c.mlp_layers)
        latents = c.num_latents * c.num_classes
        self.post_head = nn.Dense(latents)
        self.prior_head = nn.Dense(latents)
        self.stem = nn.Dense(c.hidden)
        self.stem_norm = nn.RMSNorm()
        self.reward_mlp = MLP(c.head_units, c.head_layers)
        self.reward_out = nn.Dense(c.num_bins, kernel_init=nn.initializers.zeros)  # predicts 0 at first
        self.terminal_mlp = MLP(c.head_units, c.head_layers)
        self.terminal_out = nn.Dense(1)

    @nn.nowrap
    def initial_carry(self, batch_shape: Sequence[int]):
        """The backbone's zero carry for a batch `batch_shape` (callable on the unbound module)."""
        return make_backbone(self.config.backbone, **dict(self.config.core_kwargs)).initialize_carry(tuple(batch_shape))

    @nn.nowrap
    def bins(self):
        return twohot_bins(self.config.num_bins)

    def _logits(self, head, x):
        logits = head(x).reshape((*x.shape[:-1], self.config.num_latents, self.config.num_classes))
        return unimix_logits(logits, self.config.unimix)

    def posterior(self, obs):
        """obs `[..., *obs_shape]` -> q's logits `[..., K, C]`."""
        return self._logits(self.post_head, self.encoder(obs))

    def prior(self, h):
        """h `[..., D]` -> p's logits `[..., K, C]` (the next step's latent)."""
        return self._logits(self.prior_head, h)

    def sample_posterior(self, obs, key):
        """obs `[..., *obs_shape]` -> a posterior latent `[..., K*C]` (straight-through one-hot)."""
        return sample_latent(self.posterior(obs), key)

    def sample_prior(self, h, key):
        """h `[..., D]` -> a latent of the next step `[..., K*C]` from the prior."""
        return sample_latent(self.prior(h), key)

    def sequence(self, carry, z, actions, resets):
        """z `[T, B, K*C]`, actions int `[T, B]`, resets `[T, B]` -> (carry, h `[T, B, D]`); T = 1 is step mode."""
        x = jnp.concatenate([z, jax.nn.one_hot(actions, self.num_actions)], -1)
        return self.core(carry, nn.silu(self.stem_norm(self.stem(x))), resets)

    def decode(self, z):
        return self.decoder(z)

    def heads(self, h):
        """h `[..., D]` -> (reward logits `[..., num_bins]`, termination logit `[...]`)."""
        return self.reward_out(self.reward_mlp(h)), self.terminal_out(self.terminal_mlp(h))[..., 0]

    def observe(self, carry, obs, actions, resets, key):
        """Sequence mode: obs `[T, B, *obs_shape]`, actions int `[T, B]`, resets `[T, B]`, key for the posterior
        samples -> (carry after step T, dict of post and prior logits `[T, B, K, C]`, z `[T, B, K*C]`,
        h `[T, B, D]`, recon `[T, B, *obs_shape]`, reward logits `[T, B, bins]`, terminal logit `[T, B]`)."""
        post = self.posterior(obs)
        z = sample_latent(post, key)
        carry, h = self.sequence(carry, z, actions, resets)
        reward, terminal = self.heads(h)
        out = dict(post=post, prior=self.prior(h), z=z, h=h, recon=self.decode(z), reward=reward, terminal=terminal)
        return carry, out

    def imagine_step(self, carry, z, action, key):
        """Step mode: z `[B, K*C]`, action int `[B]` -> (carry, dict of h `[B, D]`, the next latent z `[B, K*C]`
        sampled from the prior, reward logits `[B, bins]`, terminal logit `[B]`)."""
        carry, h = self.sequence(carry, z[None], action[None], jnp.zeros((1, *action.shape), bool))
        h = h[0]
        reward, terminal = self.heads(h)
        return carry, dict(h=h, z=self.sample_prior(h, key), reward=reward, terminal=terminal)


@dataclasses.dataclass(frozen=True)
class LossScales:
    """KL settings: free nats (applied to the batch-mean KL) and the dynamics / representation weights."""

    free_bits: float = 1.0
    dynamics: float = 1.0
    representation: float = 0.1


def world_model_loss(out: dict, obs, rewards, terminals, firsts, bins, scales: LossScales):
    """Drama's loss on `observe`'s outputs: obs `[T, B, *obs_shape]` (the targets), rewards, terminals (the
    transition from o_t ended the episode) and firsts (o_t starts one) `[T, B]`. Returns (loss, float32 terms)."""
    obs_axes = tuple(range(2, obs.ndim))
    recon = jnp.mean(jnp.sum((out["recon"] - obs) ** 2, obs_axes))
    reward = jnp.mean(twohot_loss(out["reward"], rewards, bins))
    logit, target = out["terminal"], terminals.astype(jnp.float32)
    terminal = jnp.mean(jnp.maximum(logit, 0.0) - logit * target + jnp.log1p(jnp.exp(-jnp.abs(logit))))
    keep = 1.0 - firsts[1:].astype(jnp.float32)  # p(z | h_t) cannot predict o_{t+1} of a new episode
    post, prior, sg = out["post"][1:], out["prior"][:-1], jax.lax.stop_gradient
    count = jnp.maximum(keep.sum(), 1.0)
    kl_dyn = jnp.sum(categorical_kl(sg(post), prior) * keep) / count
    kl_rep = jnp.sum(categorical_kl(post, sg(prior)) * keep) / count
    dyn, rep = jnp.maximum(kl_dyn, scales.free_bits), jnp.maximum(kl_rep, scales.free_bits)
    loss = recon + reward + terminal + scales.dynamics * dyn + scales.representation * rep
    terms = dict(wm_loss=loss, recon_loss=recon, reward_loss=reward, terminal_loss=terminal, dyn_loss=dyn,
                 rep_loss=rep, kl=kl_dyn)
    return loss, {k: v.astype(jnp.float32) for k, v in terms.items()}

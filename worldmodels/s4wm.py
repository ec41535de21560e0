"""S4WM (Deng, Park, Ahn, NeurIPS 2023): a latent world model whose backbone runs in parallel over sequences.

Generative model, per time step t of a batch of sequences (T time steps, batch B):

  posterior   q(z_t | o_t)                 encoder (CNN for images, MLP for vectors) -> diagonal Gaussian
  backbone    h_{1:T} = core(g_{1:T}),  g_t = MLP([z_{t-1}, a_{t-1}])   (S4 by default, any registered core)
  prior       p(z_t | h_t)                 MLP -> diagonal Gaussian
  decoder     p(o_t | z_t, h_t)            transposed CNN / MLP, unit-variance Gaussian (MSE)
  heads       r_t, continue_t from [z_t, h_t]

Because the posterior sees only o_t (not h_t), all z_t are sampled at once and the backbone runs over the
whole sequence in its parallel mode (`observe`); imagination runs the same backbone one step at a time from
a context carry, sampling z_t from the prior (`imagine`). At an episode start (reset) the backbone state,
z_{t-1} and a_{t-1} are zeroed, so episodes in one sequence are independent.

Loss (negative ELBO, per step averaged over T and B): sum-of-squares reconstruction + reward MSE + continue
cross-entropy + KL, with KL balancing and free nats (DreamerV2's form and defaults):
  KL = alpha * max(KL(sg q || p), free) + (1 - alpha) * max(KL(q || sg p), free),  alpha = 0.8, free = 1 nat.

What is the paper's (checked on its abstract and project page, fdeng18.github.io/s4wm): a latent-variable
world model trained fully in parallel over sequences that imagines in latent space; the backbone is a stack of
S4 blocks with a final MLP ("s4", `ssmrl.worldmodels.s4_blocks`); the baselines are RSSM (RNN; here "gru") and TSSM
(Transformer; here "transformer"). Not checked against the paper (its body could not be read here), so ours:
the posterior on o_t alone (what makes parallel training possible), diagonal Gaussian latents and their size,
alpha = 0.8 and free = 1 nat (DreamerV2's values), layer widths and depths, the MLP heads, the continue head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from ssmrl.ssm.registry import CORES, build_named
from ssmrl.worldmodels.s4_blocks import S4WMCore
from ssmrl.worldmodels.transformer import CausalTransformerCore

# Backbones by name: every `ssm` core, with "s4" replaced by S4WM's S4 blocks (final MLP), plus "transformer".
BACKBONES = {**CORES, "s4": S4WMCore, "transformer": CausalTransformerCore}


def make_backbone(name: str, **kwargs) -> nn.Module:
    """A sequence core of BACKBONES by name; ValueError naming an unknown name or option and the accepted ones."""
    return build_named(BACKBONES, "core", name, kwargs)


@chex.dataclass(frozen=True)
class Gaussian:
    """Diagonal Gaussian: mean, std `[..., Z]`."""

    mean: jax.Array
    std: jax.Array

    def sample(self, key):
        return self.mean + self.std * jax.random.normal(key, self.mean.shape)


def gaussian_kl(q: Gaussian, p: Gaussian):
    """KL(q || p) summed over the last axis: `[...]`."""
    var_ratio = (q.std / p.std) ** 2
    return 0.5 * jnp.sum(var_ratio + ((q.mean - p.mean) / p.std) ** 2 - 1.0 - jnp.log(var_ratio), -1)


@chex.dataclass(frozen=True)
class WMCarry:
    """Imagination/observation state: core carry and the last latent z `[B, Z]` (zeros at the start)."""

    core: Any
    z: jax.Array


def image_levels(obs_shape: Sequence[int]) -> int:
    """Number of stride-2 conv levels taking an `[S, S, C]` image to 4x4 (S = 4 * 2^k, k >= 1)."""
    size = obs_shape[0]
    levels = int(round(math.log2(max(size, 1) / 4)))
    if obs_shape[0] != obs_shape[1] or levels < 1 or size != 4 * 2**levels:
        raise ValueError(f"image observations must be square with side 4 * 2^k >= 8, got shape {tuple(obs_shape)}")
    return levels


class Encoder(nn.Module):
    """o `[..., *obs_shape]` -> features `[..., F]`: stride-2 CNN to 4x4 (images) or MLP (vectors)."""

    obs_shape: tuple[int, ...]
    depth: int = 32
    units: int = 256

    @nn.compact
    def __call__(self, obs):
        if len(self.obs_shape) == 1:
            return nn.silu(nn.Dense(self.units)(nn.silu(nn.Dense(self.units)(obs))))
        lead = obs.shape[: -len(self.obs_shape)]
        x = obs.reshape((-1, *self.obs_shape))
        for level in range(image_levels(self.obs_shape)):
            x = nn.silu(nn.Conv(self.depth * 2**level, (4, 4), strides=(2, 2), padding="SAME")(x))
        return x.reshape((*lead, -1))


class Decoder(nn.Module):
    """features `[..., F]` -> observation mean `[..., *obs_shape]`: transposed CNN from 4x4 (images) or MLP."""

    obs_shape: tuple[int, ...]
    depth: int = 32
    units: int = 256

    @nn.compact
    def __call__(self, x):
        if len(self.obs_shape) == 1:
            return nn.Dense(self.obs_shape[0])(nn.silu(nn.Dense(self.units)(nn.silu(nn.Dense(self.units)(x)))))
        levels = image_levels(self.obs_shape)
        lead = x.shape[:-1]
        width = self.depth * 2 ** (levels - 1)
        x = nn.Dense(4 * 4 * width)(x).reshape((-1, 4, 4, width))
        for level in reversed(range(levels)):
            last = level == 0
            features = self.obs_shape[-1] if last else self.depth * 2 ** (level - 1)
            x = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")(x)
            x = x if last else nn.silu(x)
        return x.reshape((*lead, *self.obs_shape))


class GaussianHead(nn.Module):
    """x `[..., D]` -> diagonal Gaussian over `[..., latent_dim]` (std = softplus + min_std)."""

    latent_dim: int
    units: int
    min_std: float

    @nn.compact
    def __call__(self, x):
        out = nn.Dense(2 * self.latent_dim)(nn.silu(nn.Dense(self.units)(x)))
        mean, raw = jnp.split(out, 2, -1)
        return Gaussian(mean=mean, std=jax.nn.softplus(raw) + self.min_std)


class ScalarHead(nn.Module):
    """x `[..., D]` -> `[...]` (reward or continue logit)."""

    units: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.silu(nn.Dense(self.units)(nn.silu(nn.Dense(self.units)(x)))))[..., 0]


class S4WM(nn.Module):
    """The S4WM world model (see the module docstring). Observations are floats (images scaled to [-0.5, 0.5]),
    actions float vectors `[..., action_dim]` (one-hot for discrete actions).

    Methods (call with `model.apply(params, ..., method=...)`): `observe` (parallel), `step` (one imagination
    step), `sequence` (the backbone alone); module-level `imagine` scans `step`.
    """

    obs_shape: tuple[int, ...]
    action_dim: int
    backbone: str = "s4"
    core_kwargs: Any = None  # dict of options for the core (e.g. d_model, n_layers)
    latent_dim: int = 32
    units: int = 256
    cnn_depth: int = 32
    min_std: float = 0.1

    def setup(self):
        self.core = make_backbone(self.backbone, **dict(self.core_kwargs or {}))
        self.encoder = Encoder(self.obs_shape, self.cnn_depth, self.units)
        self.decoder = Decoder(self.obs_shape, self.cnn_depth, self.units)
        self.posterior = GaussianHead(self.latent_dim, self.units, self.min_std)
        self.prior = GaussianHead(self.latent_dim, self.units, self.min_std)
        self.input_mlp = nn.Dense(self.units)
        self.reward_head = ScalarHead(self.units)
        self.continue_head = ScalarHead(self.units)

    @nn.nowrap
    def initial_carry(self, batch_shape: Sequence[int]) -> WMCarry:
        """Zero carry for a batch `batch_shape` (callable on the unbound module)."""
        core = make_backbone(self.backbone, **dict(self.core_kwargs or {}))
        return WMCarry(core=core.initialize_carry(tuple(batch_shape)), z=jnp.zeros((*batch_shape, self.latent_dim)))

    def sequence(self, core_carry, z_prev, a_prev, resets):
        """The backbone: z_prev `[T, B, Z]`, a_prev `[T, B, A]`, resets `[T, B]` -> (core carry, h `[T, B, D]`),
        with g_t = MLP([z_{t-1}, a_{t-1}]) zeroed where a new episode starts (T = 1 is step mode)."""
        keep = 1.0 - resets[..., None].astype(jnp.float32)
        g = nn.silu(self.input_mlp(jnp.concatenate([z_prev * keep, a_prev * keep], -1)))
        return self.core(core_carry, g, resets)

    def heads(self, z, h):
        """Decoder mean, reward and continue logit from [z_t, h_t]."""
        feat = jnp.concatenate([z, h], -1)
        return self.decoder(feat), self.reward_head(feat), self.continue_head(feat)

    def observe(self, carry: WMCarry, obs, prev_actions, resets, key):
        """Parallel (training) mode over whole sequences.

        obs `[T, B, *obs_shape]`, prev_actions `[T, B, A]` (a_{t-1}, the action that led to o_t), resets `[T, B]`
        bool (o_t starts an episode), key: PRNG key for the posterior samples.
        Returns (carry after the last step, dict with post, prior (Gaussians `[T, B, Z]`), z `[T, B, Z]`,
        h `[T, B, D]`, recon `[T, B, *obs_shape]`, reward `[T, B]`, continue_logit `[T, B]`).
        """
        post = self.posterior(self.encoder(obs))
        z = post.sample(key)
        z_prev = jnp.concatenate([carry.z[None], z[:-1]], 0)
        core_carry, h = self.sequence(carry.core, z_prev, prev_actions, resets)
        prior = self.prior(h)
        recon, reward, cont = self.heads(z, h)
        out = dict(post=post, prior=prior, z=z, h=h, recon=recon, reward=reward, continue_logit=cont)
        return WMCarry(core=core_carry, z=z[-1]), out

    def step(self, carry: WMCarry, action, reset, key):
        """One imagination step: action `[B, A]` (a_{t-1}), reset `[B]` bool, key -> (carry, dict of z, h
        `[B, *]`, frame `[B, *obs_shape]` (decoder mean), reward, continue_logit `[B]`), z_t from the prior."""
        core_carry, h = self.sequence(carry.core, carry.z[None], action[None], reset[None])
        h = h[0]
        z = self.prior(h).sample(key)
        frame, reward, cont = self.heads(z, h)
        return WMCarry(core=core_carry, z=z), dict(z=z, h=h, frame=frame, reward=reward, continue_logit=cont)


def imagine(model: S4WM, params, carry: WMCarry, actions, key, resets=None):
    """Open-loop imagination in step (recurrent) mode from a context carry, e.g. the one `observe` returns.

    actions `[H, B, A]` (actions[k] leads to imagined frame k), resets `[H, B]` bool (None: no reset; True:
    imagined frame k starts a new episode). Returns (carry, dict of `[H, B, ...]` arrays as in `S4WM.step`).
    """
    if resets is None:
        resets = jnp.zeros(actions.shape[:-1], bool)
    keys = jax.random.split(key, actions.shape[0])

    def body(carry, inputs):
        action, reset, k = inputs
        return model.apply(params, carry, action, reset, k, method=S4WM.step)

    return jax.lax.scan(body, carry, (actions, resets, keys))


@chex.dataclass(frozen=True)
class LossWeights:
    """ELBO settings: KL balancing alpha, free nats, and the weights of the KL, reward and continue terms."""

    kl_balance: float = 0.8
    free_nats: float = 1.0
    kl_scale: float = 1.0
    reward_scale: float = 1.0
    continue_scale: float = 1.0


def elbo_loss(out: dict, obs, rewards, continues, weights: LossWeights):
    """Negative ELBO of `observe`'s outputs: obs `[T, B, *obs_shape]`, rewards `[T, B]`, continues `[T, B]`
    (1 unless o_t is the last observation of its episode). Returns (loss, dict of float32 scalar terms)."""
    obs_axes = tuple(range(2, obs.ndim))
    recon = jnp.mean(jnp.sum((out["recon"] - obs) ** 2, obs_axes))
    reward = jnp.mean((out["reward"] - rewards) ** 2)
    logit = out["continue_logit"]
    cont = jnp.mean(jnp.maximum(logit, 0.0) - logit * continues + jnp.log1p(jnp.exp(-jnp.abs(logit))))
    post, prior = out["post"], out["prior"]
    sg = lambda g: jax.tree.map(jax.lax.stop_gradient, g)
    kl_prior = gaussian_kl(sg(post), prior)  # trains the prior
    kl_post = gaussian_kl(post, sg(prior))  # regularises the posterior
    free = weights.free_nats
    kl_loss = jnp.mean(
        weights.kl_balance * jnp.maximum(kl_prior, free) + (1.0 - weights.kl_balance) * jnp.maximum(kl_post, free)
    )
    loss = recon + weights.reward_scale * reward + weights.continue_scale * cont + weights.kl_scale * kl_loss
    terms = dict(loss=loss, recon=recon, reward_loss=reward, continue_loss=cont, kl=jnp.mean(kl_post),
                 kl_loss=kl_loss)
    return loss, {k: v.astype(jnp.float32) for k, v in terms.items()}

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
reward and termination heads of one 256-unit layer.

Normalisation and initialisation (the official code's): every conv and transposed conv, and the decoder's first
Dense, is followed by BatchNorm (per channel over batch and positions, epsilon 1e-5, running averages with
momentum 0.1 in PyTorch's terms), which uses the batch's statistics while the world model trains (`training=True`)
and the running averages when it acts or imagines (the official `world_model.train()` / `.eval()`); the MLPs use
RMSNorm. The encoder, decoder, reward and termination heads (their output layers included) start from a normal
truncated at two standard deviations with variance 1 / fan_avg and zero biases (the official `tools.weight_init`);
the posterior and prior heads' kernels start as PyTorch's default Linear, uniform with variance 1 / (3 fan_in).
Adaptations (ours): images whose side is not a multiple of 2^(levels) are zero-padded for the encoder and the
decoder's output is cropped back (MinAtar's 10x10); the running variance is the biased one (PyTorch keeps the
unbiased); the posterior and prior biases start at zero (PyTorch: uniform); vector observations (POPGym) use an MLP
encoder and decoder (the paper has only images); our Mamba-2 core adds its own input Dense after the stem.

Mixed precision (`DramaModelConfig.dtype`): "bfloat16" is the official code's `Use_amp: True` (bfloat16 autocast) in
JAX's form: every Dense, Conv and ConvTranspose (encoder, decoder, stem, posterior and prior heads, reward and
termination heads) computes in bfloat16 and adds its bias in float32 (`ssmrl.ssm.precision`: the bias gradients are
float32 sums); parameters, the optimiser and the RMSNorm and BatchNorm statistics are float32, and what the loss or
sampling reads (latent logits, reward and termination logits, the reconstruction, h) is cast to float32 first. The
backbone gets `dtype=bfloat16` when it takes a `dtype` option (Mamba-2: projections in bfloat16, the SSD recurrence,
its state and the residual stream in float32; see `ssmrl.ssm.mamba2`) unless `core_kwargs` sets one; a backbone
without one (GRU, LSTM, the transformer) runs in float32. No loss scaling (the official code's GradScaler is a no-op
in bfloat16, whose exponent range is float32's). "float32" (the default) runs everything in float32.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssmrl.ssm.precision import float32_bias
from ssmrl.worldmodels.s4wm import BACKBONES, make_backbone
from ssmrl.worldmodels.twohot import twohot_bins, twohot_loss

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
"""The accepted values of a compute-dtype option (`model.dtype`, `behaviour.dtype`)."""


def compute_dtype(name: str, option: str):
    """The jnp dtype of a compute-dtype option named `option`; ValueError naming a bad value and the accepted ones."""
    if not isinstance(name, str) or name not in COMPUTE_DTYPES:
        raise ValueError(f"{option} must be one of {sorted(COMPUTE_DTYPES)}, got {name!r}")
    return COMPUTE_DTYPES[name]


OFFICIAL_INIT = nn.initializers.variance_scaling(1.0, "fan_avg", "truncated_normal")
"""The official `tools.weight_init` of convs and Dense layers: normal truncated at +-2 std, variance 1 / fan_avg."""
TORCH_LINEAR_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
"""PyTorch's default Linear kernel: uniform on +-1/sqrt(fan_in)."""


def batch_norm(training: bool, dtype) -> nn.BatchNorm:
    """BatchNorm over all axes but the channels (PyTorch's BatchNorm2d: epsilon 1e-5, momentum 0.1), statistics in
    float32: the batch's when `training`, else the running averages (the `batch_stats` collection)."""
    return nn.BatchNorm(use_running_average=not training, momentum=0.9, epsilon=1e-5, dtype=dtype)


def mixed_dense(features: int, dtype, **kwargs) -> nn.Dense:
    """nn.Dense computing in `dtype` with its bias added in float32 (`ssmrl.ssm.precision.float32_bias`)."""
    return nn.Dense(features, dtype=dtype, promote_dtype=float32_bias, **kwargs)


class MLP(nn.Module):
    """x `[..., D]` -> `[..., units]`: `layers` x (Dense -> RMSNorm -> SiLU), computed in `dtype` (the biases and
    RMSNorm's statistics in float32, see `ssmrl.ssm.precision`); the output is in `dtype`."""

    units: int
    layers: int
    dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x):
        for _ in range(self.layers):
            dense = mixed_dense(self.units, self.dtype, kernel_init=self.kernel_init)
            x = nn.silu(nn.RMSNorm(dtype=self.dtype)(dense(x)))
        return x


def padded_side(side: int, levels: int) -> int:
    """The image side rounded up to a multiple of 2^levels (what `levels` stride-2 convs halve exactly)."""
    step = 2**levels
    return math.ceil(side / step) * step


class ConvEncoder(nn.Module):
    """Images `[..., S, S, C]` in [0, 1] -> features `[..., F]` in `dtype`: conv (stride 1), then len(mults) - 1
    stride-2 convs, each with BatchNorm (`batch_norm(training)`) and SiLU; channels depth * mults[i]."""

    depth: int = 16
    mults: tuple[int, ...] = (1, 2, 3, 4, 4)
    kernel: int = 5
    dtype: Any = jnp.float32
    training: bool = False

    @nn.compact
    def __call__(self, obs):
        lead, (height, width, _) = obs.shape[:-3], obs.shape[-3:]
        side = padded_side(max(height, width), len(self.mults) - 1)
        x = obs.reshape((-1, *obs.shape[-3:]))
        x = jnp.pad(x, ((0, 0), (0, side - height), (0, side - width), (0, 0)))
        for i, mult in enumerate(self.mults):
            x = nn.Conv(self.depth * mult, (self.kernel, self.kernel), strides=1 if i == 0 else 2, padding="SAME",
                        dtype=self.dtype, promote_dtype=float32_bias, kernel_init=OFFICIAL_INIT)(x)
            x = nn.silu(batch_norm(self.training, self.dtype)(x))
        return x.reshape((*lead, -1))


class ConvDecoder(nn.Module):
    """Latents `[..., Z]` -> float32 images `[..., *obs_shape]` in (0, 1): the encoder mirrored (Dense to the
    smallest map, stride-2 transposed convs, each with BatchNorm and SiLU, then a stride-1 transposed conv to the
    channels, crop, sigmoid), computed in `dtype` up to the sigmoid (float32)."""

    obs_shape: tuple[int, ...]
    depth: int = 16
    mults: tuple[int, ...] = (1, 2, 3, 4, 4)
    kernel: int = 5
    dtype: Any = jnp.float32
    training: bool = False

    @nn.compact
    def __call__(self, z):
        height, width, channels = self.obs_shape
        levels = len(self.mults) - 1
        small = padded_side(max(height, width), levels) // 2**levels
        k = (self.kernel, self.kernel)
        norm = lambda: batch_norm(self.training, self.dtype)
        transposed = functools.partial(nn.ConvTranspose, kernel_size=k, padding="SAME", dtype=self.dtype,
                                       promote_dtype=float32_bias, kernel_init=OFFICIAL_INIT)
        x = mixed_dense(small * small * self.depth * self.mults[-1], self.dtype, kernel_init=OFFICIAL_INIT)(z)
        x = nn.silu(norm()(x.reshape((-1, small, small, self.depth * self.mults[-1]))))
        for mult in reversed(self.mults[:-1]):
            x = nn.silu(norm()(transposed(self.depth * mult, strides=(2, 2))(x)))
        x = transposed(channels, strides=(1, 1))(x)[:, :height, :width]
        return nn.sigmoid(x.astype(jnp.float32)).reshape((*z.shape[:-1], *self.obs_shape))


class VectorDecoder(nn.Module):
    """Latents `[..., Z]` -> float32 vector observations `[..., D]`: MLP then a linear output, computed in `dtype`."""

    obs_dim: int
    units: int = 256
    layers: int = 2
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, z):
        return mixed_dense(self.obs_dim, self.dtype)(MLP(self.units, self.layers, self.dtype)(z)).astype(jnp.float32)


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
    options (`ssmrl.ssm.make_core` names). dtype: the compute dtype, "float32" or "bfloat16" (mixed precision, the
    official `Use_amp: True`; see the module docstring). The trainer's `ModelConfig` extends it with the training
    settings."""

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
    dtype: str = "float32"


class DramaWorldModel(nn.Module):
    """Drama's world model (see the module docstring). obs float `[..., *obs_shape]` (images in [0, 1]), actions
    int32; `config` sets the architecture. Methods (via `apply(..., method=...)`): `observe` (sequence mode),
    `imagine_step` (step mode), and the parts `posterior`, `sequence`, `prior`, `decode`, `heads`. Image models
    keep BatchNorm statistics in the `batch_stats` collection: `training=True` (world-model updates) normalises
    with the batch's and needs `mutable=["batch_stats"]`; `training=False` (acting, imagination) reads them."""

    obs_shape: tuple[int, ...]
    num_actions: int
    config: DramaModelConfig = DramaModelConfig()
    training: bool = False

    @property
    def is_image(self) -> bool:
        return len(self.obs_shape) == 3

    def setup(self):
        c = self.config
        if len(self.obs_shape) not in (1, 3):
            raise ValueError(f"Drama takes vector [D] or image [H, W, C] observations, got shape {self.obs_shape}")
        dtype = compute_dtype(c.dtype, "model.dtype")
        self.core = self.backbone()
        if self.is_image:
            self.encoder = ConvEncoder(c.cnn_depth, c.cnn_mults, c.cnn_kernel, dtype, self.training)
            self.decoder = ConvDecoder(self.obs_shape, c.cnn_depth, c.cnn_mults, c.cnn_kernel, dtype, self.training)
        else:
            self.encoder = MLP(c.mlp_units, c.mlp_layers, dtype)
            self.decoder = VectorDecoder(self.obs_shape[0], c.mlp_units, c.mlp_layers, dtype)
        latents = c.num_latents * c.num_classes
        self.post_head = mixed_dense(latents, dtype, kernel_init=TORCH_LINEAR_INIT)
        self.prior_head = mixed_dense(latents, dtype, kernel_init=TORCH_LINEAR_INIT)
        self.stem = mixed_dense(c.hidden, dtype)
        self.stem_norm = nn.RMSNorm()  # float32 output (its scale is float32): the backbone's input
        self.reward_mlp = MLP(c.head_units, c.head_layers, dtype, OFFICIAL_INIT)
        self.reward_out = mixed_dense(c.num_bins, dtype, kernel_init=OFFICIAL_INIT)
        self.terminal_mlp = MLP(c.head_units, c.head_layers, dtype, OFFICIAL_INIT)
        self.terminal_out = mixed_dense(1, dtype, kernel_init=OFFICIAL_INIT)

    @nn.nowrap
    def backbone(self) -> nn.Module:
        """The sequence core of `config`: `core_kwargs`, plus dtype=bfloat16 when `config.dtype` is "bfloat16" and
        the backbone has a `dtype` option that `core_kwargs` leaves unset."""
        c = self.config
        kwargs = dict(c.core_kwargs)
        core = BACKBONES.get(c.backbone)
        takes_dtype = core is not None and "dtype" in {f.name for f in dataclasses.fields(core)}
        if compute_dtype(c.dtype, "model.dtype") == jnp.bfloat16 and takes_dtype:
            kwargs.setdefault("dtype", jnp.bfloat16)
        return make_backbone(c.backbone, **kwargs)

    @nn.nowrap
    def initial_carry(self, batch_shape: Sequence[int]):
        """The backbone's zero carry for a batch `batch_shape` (callable on the unbound module)."""
        return self.backbone().initialize_carry(tuple(batch_shape))

    @nn.nowrap
    def bins(self):
        return twohot_bins(self.config.num_bins)

    def _logits(self, head, x):
        logits = head(x).astype(jnp.float32).reshape((*x.shape[:-1], self.config.num_latents, self.config.num_classes))
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
        """z `[T, B, K*C]`, actions int `[T, B]`, resets `[T, B]` -> (carry, float32 h `[T, B, D]`); T = 1 is step
        mode."""
        x = jnp.concatenate([z, jax.nn.one_hot(actions, self.num_actions)], -1)
        carry, h = self.core(carry, nn.silu(self.stem_norm(self.stem(x))), resets)
        return carry, h.astype(jnp.float32)

    def decode(self, z):
        return self.decoder(z)

    def heads(self, h):
        """h `[..., D]` -> (float32 reward logits `[..., num_bins]`, float32 termination logit `[...]`)."""
        reward, terminal = self.reward_out(self.reward_mlp(h)), self.terminal_out(self.terminal_mlp(h))[..., 0]
        return reward.astype(jnp.float32), terminal.astype(jnp.float32)

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
        """Step mode: z `[B, K*C]`, action int `[B]` -> (carry, dict of h `[B, D]` and the next latent z
        `[B, K*C]` sampled from the prior). The reward and termination heads read h only, so a rollout applies
        `heads` to all its steps' h at once, after the loop (fewer, larger matmuls)."""
        carry, h = self.sequence(carry, z[None], action[None], jnp.zeros((1, *action.shape), bool))
        h = h[0]
        return carry, dict(h=h, z=self.sample_prior(h, key))


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

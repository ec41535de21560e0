"""Mamba: selective state spaces (Gu, Dao 2023, "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces"), resettable.

One Mamba layer, u `[T, *batch, d_model]`, with d_inner = expand * d_model:

  x, z = in_proj(u)                                      (2 * d_inner, no bias)
  x = SiLU(causal depthwise conv1d of width d_conv (x))
  dt, B, C = x_proj(x)                                   (dt_rank + 2 N, no bias)
  delta = softplus(dt_proj(dt))                          (dt_rank -> d_inner, with the dt bias)
  h_t = exp(delta_t A) * h_{t-1} + delta_t B_t x_t       (A = -exp(A_log) `[d_inner, N]`, via `reset_scan`)
  y = (C_t h_t + D * x) * SiLU(z),  out = out_proj(y)    (no bias)

Initialisation as the paper's reference: A_log = log(n + 1) (S4D-Real, A_n = -(n+1)), D = 1, dt_proj's weight
uniform in +-dt_scale / sqrt(dt_rank), its bias the inverse softplus of dt sampled log-uniform in
[dt_min, dt_max] (floored at dt_init_floor). Blocks are pre-norm residual, x + layer(RMSNorm(x)), with a final
RMSNorm after the stack, as in Mamba's reference language model. The conv window and the SSM state are the
layer's carry; a reset clears both (no conv tap reaches across a reset, see `ssmrl.ssm.causal_conv`).

Simplifications: the projections use flax's default (LeCun normal) initialisation instead of PyTorch's, and
out_proj is not rescaled by 1/sqrt(n_layers) (the GPT-2 style rescaling of the reference training code).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssmrl.ssm.causal_conv import CausalConv, symmetric_uniform
from ssmrl.ssm.precision import at_least_float32
from ssmrl.ssm.scan import reset_scan
from ssmrl.ssm.stack import StackedCore


@chex.dataclass(frozen=True)
class MambaState:
    """Carry of one Mamba, Mamba-2 or Gated DeltaNet layer: conv window `[*batch, d_conv-1, C]` and state
    `[*batch, ...]`."""

    conv: jax.Array
    ssm: jax.Array


def check_positive(owner: str, **values):
    """Raise ValueError naming every value that is not a positive int."""
    bad = {k: v for k, v in values.items() if not (isinstance(v, int | np.integer) and v >= 1)}
    if bad:
        raise ValueError(f"{owner}: these options must be positive integers: {bad}")


def check_dt_range(owner: str, dt_min: float, dt_max: float, dt_init_floor: float):
    if not 0 < dt_min <= dt_max or dt_init_floor < 0:
        raise ValueError(
            f"{owner}: need 0 < dt_min <= dt_max and dt_init_floor >= 0, got dt_min={dt_min}, dt_max={dt_max}, "
            f"dt_init_floor={dt_init_floor}"
        )


def inverse_softplus(y):
    """x with softplus(x) = y, for y > 0."""
    return y + jnp.log(-jnp.expm1(-y))


def dt_bias_init(dt_min: float, dt_max: float, dt_init_floor: float):
    """Initialiser of the dt bias: inverse softplus of dt ~ log-uniform[dt_min, dt_max], floored."""

    def init(key, shape, dtype=jnp.float32):
        lo, hi = math.log(dt_min), math.log(dt_max)
        dt = jnp.exp(jax.random.uniform(key, shape, dtype, minval=lo, maxval=hi))
        return inverse_softplus(jnp.maximum(dt, dt_init_floor))

    return init


def s4d_real_log(d_inner: int, d_state: int):
    """A_log `[d_inner, d_state]` with A = -exp(A_log) = -(n + 1) in every channel (S4D-Real)."""
    return jnp.log(jnp.broadcast_to(jnp.arange(1, d_state + 1, dtype=jnp.float32), (d_inner, d_state)))


class MambaLayer(nn.Module):
    """One Mamba layer (selective SSM mixer): u `[T, *batch, d_model]` -> `[T, *batch, d_model]`."""

    d_model: int
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None  # None: ceil(d_model / 16), the paper's "auto"
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_scale: float = 1.0
    scan_method: str = "auto"

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def rank(self) -> int:
        return math.ceil(self.d_model / 16) if self.dt_rank is None else self.dt_rank

    @nn.nowrap
    def _check(self):
        check_positive(
            "MambaLayer", d_model=self.d_model, d_state=self.d_state, d_conv=self.d_conv, expand=self.expand,
            dt_rank=self.rank,
        )
        check_dt_range("MambaLayer", self.dt_min, self.dt_max, self.dt_init_floor)

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]) -> MambaState:
        self._check()
        conv = CausalConv(self.d_inner, self.d_conv, parent=None).initialize_carry(batch_shape)
        return MambaState(conv=conv, ssm=jnp.zeros((*batch_shape, self.d_inner, self.d_state), jnp.float32))

    @nn.compact
    def __call__(self, carry: MambaState, u, resets):
        """carry, u `[T, *batch, d_model]`, resets `[T, *batch]` -> (carry, `[T, *batch, d_model]`)."""
        self._check()
        d_inner, rank, n = self.d_inner, self.rank, self.d_state
        x, z = jnp.split(nn.Dense(2 * d_inner, use_bias=False, name="in_proj")(u), 2, axis=-1)
        conv, x = CausalConv(d_inner, self.d_conv, name="conv1d")(carry.conv, x, resets)
        x = nn.silu(x)
        dt, b, c = jnp.split(nn.Dense(rank + 2 * n, use_bias=False, name="x_proj")(x), [rank, rank + n], axis=-1)
        dt_proj = nn.Dense(
            d_inner,
            kernel_init=symmetric_uniform(self.dt_scale * rank**-0.5),
            bias_init=dt_bias_init(self.dt_min, self.dt_max, self.dt_init_floor),
            name="dt_proj",
        )
        delta = nn.softplus(dt_proj(dt))  # [T, *batch, d_inner]
        a_log = self.param("A_log", lambda _: s4d_real_log(d_inner, n))
        d = self.param("D", nn.initializers.ones, (d_inner,), jnp.float32)
        decay = jnp.exp(delta[..., None] * -jnp.exp(a_log))  # [T, *batch, d_inner, N]
        h = reset_scan(decay, (delta * x)[..., None] * b[..., None, :], resets, carry.ssm, method=self.scan_method)
        y = (jnp.einsum("...dn,...n->...d", h, c) + d * x) * nn.silu(z)
        return MambaState(conv=conv, ssm=h[-1]), nn.Dense(self.d_model, use_bias=False, name="out_proj")(y)


class ResidualBlock(nn.Module):
    """x + layer(RMSNorm(x)): the pre-norm residual block of Mamba's (and Mamba-2's) reference model. The sum is at
    least float32 (the reference's `residual_in_fp32`) when x or the layer's output is bfloat16."""

    layer: nn.Module
    eps: float = 1e-5

    @nn.compact
    def __call__(self, carry, x, resets, deterministic: bool = True):
        del deterministic  # no dropout in Mamba blocks
        carry, y = self.layer(carry, nn.RMSNorm(epsilon=self.eps, name="norm")(x), resets)
        return carry, at_least_float32(x) + y


class ResidualStack(StackedCore):
    """Stack of `ResidualBlock`s around `layer()` with a final RMSNorm ("norm_f"), as Mamba's reference model."""

    @nn.nowrap
    def block(self, index: int) -> ResidualBlock:
        return ResidualBlock(self.layer(), name=f"block_{index}")

    @nn.nowrap
    def final_norm(self, x):
        return nn.RMSNorm(epsilon=1e-5, name="norm_f")(x)


class MambaCore(ResidualStack):
    """Stacked Mamba: x `[T, *batch, D]` -> Dense(d_model) -> n_layers residual Mamba blocks -> RMSNorm.

    Carry: a tuple of n_layers `MambaState`s (conv `[*batch, d_conv-1, d_inner]`, ssm `[*batch, d_inner, N]`).
    """

    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    dt_scale: float = 1.0
    scan_method: str = "auto"

    @nn.nowrap
    def layer(self) -> MambaLayer:
        return MambaLayer(
            self.d_model, self.d_state, self.d_conv, self.expand, self.dt_rank, self.dt_min, self.dt_max,
            self.dt_init_floor, self.dt_scale, self.scan_method, parent=None,
        )

"""LRU: the Linear Recurrent Unit (Orvieto et al., ICML 2023, "Resurrecting Recurrent Neural Networks for Long
Sequences"), resettable.

One LRU layer with N complex states over u `[T, *batch, H]`:

  lambda = exp(-exp(nu_log) + i exp(theta_log))          (diagonal, stable by construction)
  h_t = lambda * h_{t-1} + exp(gamma_log) * (B u_t),     y_t = Re(C h_t) + D * u_t

with complex B `[N, H]`, C `[H, N]` and real D `[H]`, as in the paper. Initialisation: lambda uniform on the
ring r_min <= |lambda| <= r_max (|lambda|^2 uniform in [r_min^2, r_max^2]) with phase uniform in
[0, max_phase]; gamma_log = log sqrt(1 - |lambda|^2); B ~ N(0, 1/(2H)) and C ~ N(0, 1/N) per real and imaginary
part; D ~ N(0, 1). The recurrence runs through `reset_scan_planes` (real and
imaginary planes; the carry is complex64).

The block is S5's (`ssmrl.ssm.s5.S5Block`: norm, LRU, GELU + GLU, dropout, residual), the architecture of the LRU
paper. Deviation: LayerNorm instead of BatchNorm, because batch statistics would leak across episode resets.

`eigenvalue_range="[-1,1]"` applies Grazzi et al.'s map (ICLR 2025, Sec. 4; `ssmrl.ssm.eigenvalues`) to the LRU's
real decay exp(-exp(nu_log)) in [0, 1]: lambda = (2 exp(-exp(nu_log)) - 1) exp(i exp(theta_log)), so the signed
radius lies in [-1, 1]; the parameters and their ring initialisation are unchanged (the signed radius starts in
[2 r_min - 1, 2 r_max - 1]) and gamma is sqrt(1 - |lambda|^2) of the mapped lambda. A negative radius is the phase
shifted by pi: with max_phase = 2 pi the set of reachable eigenvalues is the unit disk either way and only the
parametrisation changes; with a small max_phase (the LRU paper's pi/10 on long-range tasks) "[0,1]" keeps every
eigenvalue near the positive real axis and "[-1,1]" adds the mirrored wedge around -1. The LRU's transition does
not depend on the input, so by Grazzi et al.'s analysis negative eigenvalues alone do not let it track parity
(that needs an input-dependent sign, as in Mamba).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssmrl.ssm.eigenvalues import check_eigenvalue_range, extend_range
from ssmrl.ssm.s5 import S5Block, project
from ssmrl.ssm.scan import reset_scan_planes
from ssmrl.ssm.stack import StackedCore


def ring_nu_log(key, state_size: int, r_min: float, r_max: float):
    """nu_log `[N]` with |lambda| = exp(-exp(nu_log)) and |lambda|^2 uniform in [r_min^2, r_max^2]."""
    u = jax.random.uniform(key, (state_size,), jnp.float32)
    return jnp.log(-0.5 * jnp.log(u * (r_max**2 - r_min**2) + r_min**2))


def ring_theta_log(key, state_size: int, max_phase: float):
    """theta_log `[N]` with the phase exp(theta_log) uniform in [0, max_phase]."""
    return jnp.log(max_phase * jax.random.uniform(key, (state_size,), jnp.float32))


def lru_eigenvalues(nu_log, theta_log, eigenvalue_range: str = "[0,1]"):
    """lambda = r exp(i exp(theta_log)), complex64, with the signed radius r = extend_range(exp(-exp(nu_log)),
    eigenvalue_range); for "[0,1]" the published exp(-exp(nu_log) + i exp(theta_log)), computed as always."""
    if eigenvalue_range == "[0,1]":
        return jnp.exp(-jnp.exp(nu_log) + 1j * jnp.exp(theta_log)).astype(jnp.complex64)
    radius = extend_range(jnp.exp(-jnp.exp(nu_log)), eigenvalue_range)
    return (radius * jnp.exp(1j * jnp.exp(theta_log))).astype(jnp.complex64)


class LRULayer(nn.Module):
    """One LRU: u `[T, *batch, H]` -> y `[T, *batch, H]` (u's dtype), state `[*batch, N]` complex64."""

    d_model: int
    state_size: int = 64
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi
    scan_method: str = "auto"
    eigenvalue_range: str = "[0,1]"

    @nn.nowrap
    def _check(self) -> str:
        """ValueError on a bad option; returns the canonical eigenvalue range."""
        if not 0 <= self.r_min < self.r_max <= 1 or self.max_phase <= 0:
            raise ValueError(
                f"LRU: need 0 <= r_min < r_max <= 1 and max_phase > 0, got r_min={self.r_min}, r_max={self.r_max}, "
                f"max_phase={self.max_phase}"
            )
        return check_eigenvalue_range("LRU", self.eigenvalue_range)

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]):
        self._check()
        return jnp.zeros((*batch_shape, self.state_size), jnp.complex64)

    @nn.compact
    def __call__(self, h0, u, resets):
        """h0 `[*batch, N]`, u `[T, *batch, H]`, resets `[T, *batch]` -> (h_T, y `[T, *batch, H]`)."""
        eigenvalue_range = self._check()
        n, width = self.state_size, self.d_model
        nu_log = self.param("nu_log", lambda key: ring_nu_log(key, n, self.r_min, self.r_max))
        theta_log = self.param("theta_log", lambda key: ring_theta_log(key, n, self.max_phase))
        lam = lru_eigenvalues(nu_log, theta_log, eigenvalue_range)
        gamma_log = self.param("gamma_log", lambda _: jnp.log(jnp.sqrt(1.0 - jnp.abs(lam) ** 2)))
        normal = lambda std: nn.initializers.normal(stddev=std)
        b_re = self.param("B_re", normal((2 * width) ** -0.5), (n, width), jnp.float32)
        b_im = self.param("B_im", normal((2 * width) ** -0.5), (n, width), jnp.float32)
        c_re = self.param("C_re", normal(n**-0.5), (width, n), jnp.float32)
        c_im = self.param("C_im", normal(n**-0.5), (width, n), jnp.float32)
        d = self.param("D", normal(1.0), (width,), jnp.float32)
        gamma = jnp.exp(gamma_log)
        bu = (gamma * project(u, b_re.T), gamma * project(u, b_im.T))  # real and imaginary planes [T, *batch, N]
        h_re, h_im = reset_scan_planes((lam.real, lam.imag), bu, resets, (h0.real, h0.imag), method=self.scan_method)
        y = h_re @ c_re.T - h_im @ c_im.T + d * u
        return jax.lax.complex(h_re[-1], h_im[-1]), y.astype(u.dtype)


class LRUCore(StackedCore):
    """Stacked LRU: x `[T, *batch, D]` -> Dense(d_model) -> n_layers S5-style blocks around an LRU.

    Carry: a tuple of n_layers complex64 states `[*batch, N]`.
    """

    state_size: int = 64
    r_min: float = 0.0
    r_max: float = 1.0
    max_phase: float = 2 * math.pi
    activation: str = "full_glu"
    prenorm: bool = True
    dropout: float = 0.0
    scan_method: str = "auto"
    eigenvalue_range: str = "[0,1]"

    @nn.nowrap
    def layer(self) -> LRULayer:
        return LRULayer(self.d_model, self.state_size, self.r_min, self.r_max, self.max_phase, self.scan_method,
                        self.eigenvalue_range, parent=None)

    @nn.nowrap
    def block(self, index: int) -> S5Block:
        return S5Block(self.layer(), self.activation, self.prenorm, self.dropout, self.dtype, name=f"block_{index}")

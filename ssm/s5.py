"""S5: simplified state-space layers (Smith, Warrington, Linderman, ICLR 2023), resettable.

One multi-input multi-output diagonal SSM per layer, in the eigenbasis of HiPPO-N:

  h_t = Lambda_bar * h_{t-1} + B_bar u_t,   y_t = Re(C h_t) (2 Re(...) with conjugate symmetry) + D * u_t

with Lambda from HiPPO-N (block-diagonal with J blocks), B_tilde = V^-1 B and C_tilde = C V, a learnable log
time step per state in [log dt_min, log dt_max], and ZOH or bilinear discretisation. The recurrence runs
through `reset_scan_planes` on real and imaginary planes (no complex array of the sequence is built; the carry is
complex64), so episode boundaries anywhere in a sequence zero the state.

Deviation from the paper's sequence models: the block uses LayerNorm (not BatchNorm), because batch
statistics across time would leak information across episode resets in RL.

No `eigenvalue_range` option (unlike Mamba-2 and LRU, see `ssmrl.ssm.eigenvalues`). Grazzi et al. (ICLR 2025,
"Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues") map a real transition in [0, 1] that the
input selects (Mamba's exp(-dt exp(w))) to [-1, 1], so that an input can flip the sign of the state, which parity
needs. S5 has neither: its Lambda_bar = exp(Lambda dt) is complex and does not depend on the input, and its
spectrum already reaches the left half of the unit disk (HiPPO-N's |Im Lambda| reaches ~1300 for P = 64, so at
dt = 0.1 most modes have phase Im(Lambda) dt > pi/2). Extending the range would only move HiPPO's eigenvalues,
the point of S5's initialisation, without giving an input-dependent sign.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssmrl.ssm.hippo import hippo_normal_eig
from ssmrl.ssm.scan import reset_scan_planes
from ssmrl.ssm.stack import StackedCore

DISCRETIZATIONS = ("zoh", "bilinear")
C_INITS = ("trunc_standard_normal", "lecun_normal", "complex_normal")
ACTIVATIONS = ("gelu", "full_glu", "half_glu1", "half_glu2")


def choice(value, accepted, what):
    """Raise a ValueError naming `value` and the accepted ones unless `value` is among them."""
    if value not in accepted:
        raise ValueError(f"unknown {what} {value!r}; accepted: {accepted}")


def check_block_size(state_size: int, blocks: int, conj_sym: bool) -> int:
    """The size of one of the `blocks` diagonal blocks; ValueError unless it divides state_size (evenly in two
    with conjugate symmetry)."""
    if state_size % blocks:
        raise ValueError(f"S5: state_size {state_size} is not divisible by blocks {blocks}")
    size = state_size // blocks
    if conj_sym and size % 2:
        raise ValueError(f"S5: conjugate symmetry needs an even block size, got state_size/blocks = {size}")
    return size


def s5_eigenbasis(state_size: int, blocks: int, conj_sym: bool) -> tuple[np.ndarray, np.ndarray]:
    """Block-diagonal HiPPO-N initialisation.

    Returns Lambda `[P']` and V `[P, P']` (P' = P/2 with conjugate symmetry, else P) such that the
    block-diagonal HiPPO-N matrix restricted to the kept modes is V diag(Lambda) V^H.
    """
    size = check_block_size(state_size, blocks, conj_sym)
    lam, v = hippo_normal_eig(size)
    keep = size // 2 if conj_sym else size
    lam, v = lam[:keep], v[:, :keep]
    lam_all = np.tile(lam, blocks)
    v_all = np.zeros((state_size, keep * blocks), np.complex128)
    for j in range(blocks):
        v_all[j * size : (j + 1) * size, j * keep : (j + 1) * keep] = v
    return lam_all, v_all


def discretize(lam, b_tilde, step, method: str):
    """Discretise diag(Lambda) `[P']`, B_tilde `[P', H]` with time steps `[P']`: returns Lambda_bar, B_bar."""
    if method == "zoh":
        lam_bar = jnp.exp(lam * step)
        return lam_bar, ((lam_bar - 1.0) / lam)[:, None] * b_tilde
    choice(method, DISCRETIZATIONS, "discretization")
    inv = 1.0 / (1.0 - 0.5 * step * lam)
    return inv * (1.0 + 0.5 * step * lam), (inv * step)[:, None] * b_tilde


def project(u, weight):
    """u `[..., H]` @ weight `[H, P]` in u's dtype (bfloat16 under mixed precision), the result in float32."""
    return jnp.matmul(u, weight.astype(u.dtype), preferred_element_type=jnp.float32)


class S5SSM(nn.Module):
    """One S5 SSM: u `[T, *batch, H]` -> y `[T, *batch, H]` (u's dtype), state `[*batch, P']` complex64.

    The input projection reads u in its own dtype; the scan, its state and the output projection are float32."""

    d_model: int
    state_size: int = 64
    blocks: int = 1
    conj_sym: bool = True
    discretization: str = "zoh"
    c_init: str = "lecun_normal"
    dt_min: float = 0.001
    dt_max: float = 0.1
    clip_eigs: bool = False
    step_rescale: float = 1.0
    scan_method: str = "auto"

    @property
    def num_modes(self) -> int:
        return self.state_size // 2 if self.conj_sym else self.state_size

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]):
        check_block_size(self.state_size, self.blocks, self.conj_sym)
        return jnp.zeros((*batch_shape, self.num_modes), jnp.complex64)

    def setup(self):
        choice(self.discretization, DISCRETIZATIONS, "discretization")
        choice(self.c_init, C_INITS, "c_init")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"S5: need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")
        lam, v = s5_eigenbasis(self.state_size, self.blocks, self.conj_sym)
        v = jnp.asarray(v, jnp.complex64)
        self.lambda_re = self.param("lambda_re", lambda _: jnp.asarray(lam.real, jnp.float32))
        self.lambda_im = self.param("lambda_im", lambda _: jnp.asarray(lam.imag, jnp.float32))

        def init_b(key):
            b = nn.initializers.lecun_normal()(key, (self.state_size, self.d_model), jnp.float32)
            b_tilde = v.conj().T @ b
            return jnp.stack([b_tilde.real, b_tilde.imag], -1)

        def init_c(key):
            h, p = self.d_model, self.state_size
            if self.c_init == "complex_normal":
                return nn.initializers.normal(stddev=0.5**0.5)(key, (h, self.num_modes, 2), jnp.float32)
            if self.c_init == "lecun_normal":
                c = nn.initializers.lecun_normal(in_axis=1, out_axis=0, batch_axis=(2,))(key, (h, p, 2), jnp.float32)
            else:
                c = jax.random.truncated_normal(key, -2.0, 2.0, (h, p, 2), jnp.float32)
            c_tilde = (c[..., 0] + 1j * c[..., 1]) @ v
            return jnp.stack([c_tilde.real, c_tilde.imag], -1)

        def init_log_step(key):
            lo, hi = np.log(self.dt_min), np.log(self.dt_max)
            return jax.random.uniform(key, (self.num_modes,), jnp.float32, minval=lo, maxval=hi)

        self.b = self.param("B", init_b)
        self.c = self.param("C", init_c)
        self.d = self.param("D", nn.initializers.normal(stddev=1.0), (self.d_model,), jnp.float32)
        self.log_step = self.param("log_step", init_log_step)

    def discrete_system(self):
        """Lambda_bar `[P']` and B_bar `[P', H]` (complex64) from the current parameters."""
        lam_re = jnp.minimum(self.lambda_re, -1e-4) if self.clip_eigs else self.lambda_re
        lam = lam_re + 1j * self.lambda_im
        b_tilde = self.b[..., 0] + 1j * self.b[..., 1]
        step = self.step_rescale * jnp.exp(self.log_step)
        return discretize(lam, b_tilde, step, self.discretization)

    def __call__(self, h0, u, resets):
        lam_bar, b_bar = self.discrete_system()
        bu = (project(u, b_bar.real.T), project(u, b_bar.imag.T))  # real and imaginary planes [T, *batch, P']
        h_re, h_im = reset_scan_planes((lam_bar.real, lam_bar.imag), bu, resets, (h0.real, h0.imag),
                                       method=self.scan_method)
        y = h_re @ self.c[..., 0].T - h_im @ self.c[..., 1].T
        if self.conj_sym:
            y = 2.0 * y
        return jax.lax.complex(h_re[-1], h_im[-1]), (y + self.d * u).astype(u.dtype)


class S5Block(nn.Module):
    """Norm -> S5 -> activation (GELU or a GLU variant) -> dropout -> residual, as in the S5 paper.

    `dtype` is the activations' dtype: bfloat16 runs the norm, the GLU and the residual stream in bfloat16
    (parameters, the norm's statistics and the SSM's scan stay float32)."""

    ssm: S5SSM
    activation: str = "half_glu1"
    prenorm: bool = True
    dropout: float = 0.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h0, x, resets, deterministic: bool = True):
        choice(self.activation, ACTIVATIONS, "activation")
        drop = nn.Dropout(self.dropout, deterministic=deterministic)
        x = x.astype(self.dtype)
        skip = x
        norm = nn.LayerNorm(dtype=self.dtype)
        if self.prenorm:
            x = norm(x)
        h, x = self.ssm(h0, x, resets)
        width = x.shape[-1]
        dense = functools.partial(nn.Dense, dtype=self.dtype)
        gelu = drop(nn.gelu(x))
        if self.activation == "gelu":
            x = gelu
        elif self.activation == "full_glu":
            x = drop(dense(width)(gelu) * jax.nn.sigmoid(dense(width)(gelu)))
        elif self.activation == "half_glu1":
            x = drop(gelu * jax.nn.sigmoid(dense(width)(gelu)))
        else:  # half_glu2: GELU only on the gate's input
            x = drop(x * jax.nn.sigmoid(dense(width)(gelu)))
        x = skip + x
        if not self.prenorm:
            x = norm(x)
        return h, x


class S5Core(StackedCore):
    """Stacked S5: x `[T, *batch, D]` -> Dense(d_model) -> n_layers S5 blocks -> y `[T, *batch, d_model]`.

    `dtype=jnp.bfloat16` is mixed precision: activations in bfloat16, parameters and the scan in float32.

    Carry: a tuple of n_layers complex64 states `[*batch, P']`.
    """

    state_size: int = 64
    blocks: int = 1
    conj_sym: bool = True
    discretization: str = "zoh"
    c_init: str = "lecun_normal"
    dt_min: float = 0.001
    dt_max: float = 0.1
    clip_eigs: bool = False
    activation: str = "half_glu1"
    prenorm: bool = True
    dropout: float = 0.0
    scan_method: str = "auto"

    @nn.nowrap
    def layer(self) -> S5SSM:
        return S5SSM(
            self.d_model, self.state_size, self.blocks, self.conj_sym, self.discretization, self.c_init,
            self.dt_min, self.dt_max, self.clip_eigs, scan_method=self.scan_method, parent=None,
        )

    @nn.nowrap
    def block(self, index: int) -> S5Block:
        return S5Block(self.layer(), self.activation, self.prenorm, self.dropout, self.dtype, name=f"block_{index}")

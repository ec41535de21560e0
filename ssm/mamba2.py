"""Mamba-2: the SSD layer (Dao, Gu 2024, "Transformers are SSMs: Generalized Models and Efficient Algorithms
Through Structured State Space Duality"), resettable.

One Mamba-2 layer, u `[T, *batch, d_model]`, with d_inner = expand * d_model = H heads of size P, state size N
and G groups of heads sharing B and C:

  z, xBC, dt = in_proj(u)                                (d_inner, d_inner + 2 G N, H; no bias)
  x, B, C = SiLU(causal depthwise conv1d (xBC))
  dt = softplus(dt + dt_bias),  A = -exp(A_log)          (one scalar A per head: A times identity)
  h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_t^T             (per head: h `[P, N]`)
  y_t = h_t C_t + D x_t,  out = out_proj(RMSNorm(y * SiLU(z)))  (gated RMSNorm per group; no bias)

Sequences are computed with the chunked SSD algorithm (`ssd_chunked`): inside a chunk the quadratic,
attention-like form with segment sums of the log decays; across chunks the chunk-end states pass through
`reset_scan`. A reset at t sets the log decay at t to -inf, so exp(segment sum) is exactly 0 for every
segment crossing it. Step mode (T = 1) uses the recurrent form (`ssd_recurrent`, a plain `reset_scan`).
Initialisation as the paper's reference: A ~ uniform[a_min, a_max] per head (A_log = log A), D = 1, dt bias the
inverse softplus of dt ~ log-uniform[dt_min, dt_max]. Blocks are Mamba's pre-norm residual blocks with a final
RMSNorm. The options are those of the reference's defaults (no dt clamping, D per head, gate before the norm);
chunk_size (64 here, 256 in the reference) changes speed only, not results.

`eigenvalue_range="[-1,1]"` replaces the transition exp(dt A) in [0, 1] by 2 exp(dt A) - 1 in [-1, 1] (Grazzi et
al., ICLR 2025, Sec. 4; `ssmrl.ssm.eigenvalues`), the same parameters and initialisation. A negative transition has
no real log, so the chunked form carries log|a_t| and the sign: the product of a_k over k in (j, i] is
exp(sum of log|a_k|) times sigma_i sigma_j, where sigma_i = (-1)^(number of negative a_k, k <= i, in the chunk) is
a cumulative sum of the negative-indicator, taken mod 2 (exact in integers). Resets stay -inf log decays, exactly
as for "[0,1]", whose arithmetic is unchanged (log a = dt A).

`dtype=jnp.bfloat16` is mixed precision: the input Dense (the core's encoder), in_proj and out_proj compute in
bfloat16; their outputs are read in float32, so the conv, dt, the decays, the SSD algebra, the gated norm, the
carry (conv window and state) and the residual stream stay float32 (the reference model's `residual_in_fp32`), as
do the parameters; the core's output (final RMSNorm) is float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssmrl.ssm.causal_conv import CausalConv, any_non_finite, last_reset
from ssmrl.ssm.eigenvalues import check_eigenvalue_range, extend_range
from ssmrl.ssm.mamba import MambaState, ResidualStack, check_dt_range, check_positive, dt_bias_init
from ssmrl.ssm.precision import at_least_float32
from ssmrl.ssm.scan import reset_scan


def segment_sums(log_a):
    """log_a `[..., L]` -> S `[..., L, L]`, S[i, j] = sum_{j < k <= i} log_a[k] (i >= j), -inf for i < j.

    Built by masked cumulative sums, never by differences of cumsums, so -inf entries (resets) give no NaN.
    """
    length = log_a.shape[-1]
    strict = jnp.tril(jnp.ones((length, length), bool), -1)
    sums = jnp.cumsum(jnp.where(strict, log_a[..., :, None], 0.0), axis=-2)
    return jnp.where(jnp.tril(jnp.ones((length, length), bool)), sums, -jnp.inf)


def log_transition(dt, a, eigenvalue_range: str):
    """(log|a_t|, a_t < 0) of the transition a_t = extend_range(exp(dt a), eigenvalue_range), dt `[T, *batch, H]`.

    "[0,1]": (dt a, False) exactly. "[-1,1]": |a_t| is floored at the smallest normal float, so a transition of
    exactly 0 has a finite log (and gradient); its weight exp(log) is then ~1e-38 instead of 0.
    """
    if eigenvalue_range == "[0,1]":
        return dt * a, jnp.zeros(dt.shape, bool)
    transition = 1.0 + 2.0 * jnp.expm1(dt * a)  # 2 exp(dt a) - 1, accurate near 1
    tiny = jnp.finfo(transition.dtype).tiny
    return jnp.log(jnp.maximum(jnp.abs(transition), tiny)), transition < 0


def ssd_recurrent(x, dt, a, b, c, resets, h0, method: str = "auto", eigenvalue_range: str = "[0,1]"):
    """The SSD recurrence step by step through `reset_scan`.

    x `[T, *batch, H, P]`, dt `[T, *batch, H]`, a `[H]` (negative), b and c `[T, *batch, H, N]`, resets
    `[T, *batch]`, h0 `[*batch, H, P, N]` -> (y `[T, *batch, H, P]` without the D skip, final state). The
    transition is extend_range(exp(dt a), eigenvalue_range).
    """
    decay = extend_range(jnp.exp(dt * a), eigenvalue_range)[..., None, None]
    h = reset_scan(decay, (dt[..., None] * x)[..., None] * b[..., None, :], resets, h0, method=method)
    return jnp.einsum("...hpn,...hn->...hp", h, c), h[-1]


def ssd_chunked(x, dt, a, b, c, resets, h0, chunk_size: int, method: str = "auto", eigenvalue_range: str = "[0,1]"):
    """The same as `ssd_recurrent`, by the chunked SSD algorithm with chunks of `chunk_size` steps.

    Transitions are carried as log|a_t| (-inf at a reset) and a sign: sigma_l, the product of the signs of a_k over
    the chunk's steps k <= l, is (-1)^(cumulative count of negative a_k); the sign of the product over (j, i] is
    sigma_i sigma_j.

    Nothing crosses a reset, NaN included: the chunk algebra weighs a source before a reset by exactly 0, and
    0 * NaN is NaN, so non-finite inputs (x, dt, B at a step, or h0) are zeroed for the algebra and put back as
    NaN on exactly the outputs they reach (their own step to the next reset) by a select.
    """
    if chunk_size < 1:
        raise ValueError(f"ssd_chunked: chunk_size must be >= 1, got {chunk_size}")
    steps, batch, (heads, p), n = x.shape[0], x.shape[1:-2], x.shape[-2:], b.shape[-1]
    length = min(chunk_size, steps)
    pad = -steps % length
    chunks = (steps + pad) // length

    def split(v, fill=0.0):  # [T, *batch, ...] -> [chunks, L, batch, ...] with the batch dims flattened
        v = v.reshape((steps, -1) + v.shape[1 + len(batch) :])
        v = jnp.pad(v, [(0, pad)] + [(0, 0)] * (v.ndim - 1), constant_values=fill)
        return v.reshape((chunks, length) + v.shape[1:])

    (log_a, negative), xs = log_transition(dt, a, eigenvalue_range), dt[..., None] * x  # [T, *batch, H], ...P]
    bad = ~(jnp.isfinite(log_a) & jnp.isfinite(xs).all(-1) & jnp.isfinite(b).all(-1))  # [T, *batch, H]
    bad_h0 = any_non_finite(h0, (-2, -1))  # [*batch, H]
    log_a, xs, b = (jnp.where(bad[..., None] if v.ndim > bad.ndim else bad, jnp.zeros((), v.dtype), v)
                    for v in (log_a, xs, b))
    h0 = jnp.where(bad_h0[..., None, None], jnp.zeros((), h0.dtype), h0)
    since_reset = last_reset(resets, 1)[..., None]  # [T, *batch, 1]: last reset at or before t, -1 if none
    poisoned = (last_reset(bad, 2) >= since_reset) | (bad_h0 & (since_reset < 0))  # [T, *batch, H] (-2: none)

    log_a = jnp.where(resets[..., None], -jnp.inf, log_a)
    la = jnp.moveaxis(split(log_a), 1, -1)  # [chunks, B, H, L]; padding steps are identities (log 1 = 0)
    odd = jnp.cumsum(jnp.moveaxis(split(negative.astype(jnp.int32), 0), 1, -1), axis=-1) % 2
    sign = (1 - 2 * odd).astype(la.dtype)  # [chunks, B, H, L]: sigma_l, the sign of the product up to l
    xs, b, c = split(xs), split(b), split(c)  # [chunks, L, B, H, P or N]
    decay = jnp.exp(segment_sums(la)) * sign[..., :, None] * sign[..., None, :]  # [chunks, B, H, L(to), L(from)]
    scores = jnp.einsum("clbhn,csbhn->cbhls", c, b) * decay
    y_diag = jnp.einsum("cbhls,csbhp->clbhp", scores, xs)
    states = jnp.einsum("cbhs,csbhp,csbhn->cbhpn", decay[..., -1, :], xs, b)  # chunk-end states from zero
    cum = jnp.exp(jnp.cumsum(la, axis=-1)) * sign  # [chunks, B, H, L]: transition from the chunk's start to l
    h0 = h0.reshape((-1, heads, p, n))
    h_end = reset_scan(cum[..., -1][..., None, None], states, None, h0, method=method)
    h_in = jnp.concatenate([h0[None], h_end[:-1]])  # state entering each chunk
    y_off = jnp.einsum("clbhn,cbhpn,cbhl->clbhp", c, h_in, cum)
    y = (y_diag + y_off).reshape((chunks * length, -1, heads, p))[:steps]
    y = jnp.where(poisoned[..., None], jnp.nan, y.reshape((steps, *batch, heads, p)))
    h = jnp.where(poisoned[-1][..., None, None], jnp.nan, h_end[-1].reshape((*batch, heads, p, n)))
    return y, h


def a_log_init(a_min: float, a_max: float):
    """Initialiser of A_log: log A with A ~ uniform[a_min, a_max] per head."""
    return lambda key, shape, dtype=jnp.float32: jnp.log(jax.random.uniform(key, shape, dtype, a_min, a_max))


class GatedRMSNorm(nn.Module):
    """RMSNorm(y * SiLU(z)) over `groups` equal groups of the last axis, with a learned scale; with
    `norm_before_gate`, RMSNorm(y) * SiLU(z) (Gated DeltaNet's output norm)."""

    groups: int = 1
    eps: float = 1e-5
    norm_before_gate: bool = False

    @nn.compact
    def __call__(self, y, z):
        width = y.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (width,), jnp.float32)
        g = (y if self.norm_before_gate else y * nn.silu(z)).reshape((*y.shape[:-1], self.groups, width // self.groups))
        g = g * jax.lax.rsqrt(jnp.mean(g**2, axis=-1, keepdims=True) + self.eps)
        g = g.reshape(y.shape) * scale
        return g * nn.silu(z) if self.norm_before_gate else g


class Mamba2Layer(nn.Module):
    """One Mamba-2 (SSD) layer: u `[T, *batch, d_model]` -> `[T, *batch, d_model]` (in `dtype`, the compute dtype of
    in_proj and out_proj; everything between them is float32)."""

    d_model: int
    d_state: int = 64
    d_conv: int = 4
    expand: int = 2
    head_dim: int = 64
    n_groups: int = 1
    chunk_size: int = 64
    a_min: float = 1.0
    a_max: float = 16.0
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    scan_method: str = "auto"
    eigenvalue_range: str = "[0,1]"
    dtype: Any = jnp.float32

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def n_heads(self) -> int:
        return self.d_inner // self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.n_groups * self.d_state

    @nn.nowrap
    def _check(self) -> str:
        """ValueError on a bad option; returns the canonical eigenvalue range."""
        check_positive(
            "Mamba2Layer", d_model=self.d_model, d_state=self.d_state, d_conv=self.d_conv, expand=self.expand,
            head_dim=self.head_dim, n_groups=self.n_groups, chunk_size=self.chunk_size,
        )
        if self.d_inner % self.head_dim or self.n_heads % self.n_groups:
            raise ValueError(
                f"Mamba2Layer: expand * d_model = {self.d_inner} must be a multiple of head_dim = {self.head_dim}, "
                f"and the number of heads {self.d_inner / self.head_dim:g} a multiple of n_groups = {self.n_groups}"
            )
        if not 0 < self.a_min <= self.a_max:
            raise ValueError(f"Mamba2Layer: need 0 < a_min <= a_max, got a_min={self.a_min}, a_max={self.a_max}")
        check_dt_range("Mamba2Layer", self.dt_min, self.dt_max, self.dt_init_floor)
        return check_eigenvalue_range("Mamba2Layer", self.eigenvalue_range)

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]) -> MambaState:
        self._check()
        conv = CausalConv(self.conv_dim, self.d_conv, parent=None).initialize_carry(batch_shape)
        ssm = jnp.zeros((*batch_shape, self.n_heads, self.head_dim, self.d_state), jnp.float32)
        return MambaState(conv=conv, ssm=ssm)

    @nn.compact
    def __call__(self, carry: MambaState, u, resets):
        """carry, u `[T, *batch, d_model]`, resets `[T, *batch]` -> (carry, `[T, *batch, d_model]`)."""
        eigenvalue_range = self._check()
        d_inner, heads, groups, n = self.d_inner, self.n_heads, self.n_groups, self.d_state
        proj = nn.Dense(2 * d_inner + 2 * groups * n + heads, use_bias=False, dtype=self.dtype, name="in_proj")(u)
        proj = at_least_float32(proj)
        z, xbc, dt = jnp.split(proj, [d_inner, d_inner + self.conv_dim], axis=-1)
        conv, xbc = CausalConv(self.conv_dim, self.d_conv, name="conv1d")(carry.conv, xbc, resets)
        x, b, c = jnp.split(nn.silu(xbc), [d_inner, d_inner + groups * n], axis=-1)
        lead = x.shape[:-1]
        x = x.reshape((*lead, heads, self.head_dim))
        b, c = (jnp.repeat(v.reshape((*lead, groups, n)), heads // groups, axis=-2) for v in (b, c))
        dt_bias = self.param("dt_bias", dt_bias_init(self.dt_min, self.dt_max, self.dt_init_floor), (heads,))
        a_log = self.param("A_log", a_log_init(self.a_min, self.a_max), (heads,))
        d = self.param("D", nn.initializers.ones, (heads,), jnp.float32)
        dt, a = nn.softplus(dt + dt_bias), -jnp.exp(a_log)
        if x.shape[0] == 1:
            y, h = ssd_recurrent(x, dt, a, b, c, resets, carry.ssm, self.scan_method, eigenvalue_range)
        else:
            y, h = ssd_chunked(x, dt, a, b, c, resets, carry.ssm, self.chunk_size, self.scan_method, eigenvalue_range)
        y = (y + d[:, None] * x).reshape((*lead, d_inner))
        y = GatedRMSNorm(groups, name="norm")(y, z)
        out = nn.Dense(self.d_model, use_bias=False, dtype=self.dtype, name="out_proj")(y)
        return MambaState(conv=conv, ssm=h), out


class Mamba2Core(ResidualStack):
    """Stacked Mamba-2: x `[T, *batch, D]` -> Dense(d_model) -> n_layers residual SSD blocks -> RMSNorm.

    `dtype=jnp.bfloat16`: the encoder, in_proj and out_proj in bfloat16, the rest float32 (see the module docstring).
    Carry: a tuple of n_layers float32 `MambaState`s (conv `[*batch, d_conv-1, d_inner + 2 G N]`, ssm
    `[*batch, H, P, N]`).
    """

    d_state: int = 64
    d_conv: int = 4
    expand: int = 2
    head_dim: int = 64
    n_groups: int = 1
    chunk_size: int = 64
    a_min: float = 1.0
    a_max: float = 16.0
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    scan_method: str = "auto"
    eigenvalue_range: str = "[0,1]"

    @nn.nowrap
    def layer(self) -> Mamba2Layer:
        return Mamba2Layer(
            self.d_model, self.d_state, self.d_conv, self.expand, self.head_dim, self.n_groups, self.chunk_size,
            self.a_min, self.a_max, self.dt_min, self.dt_max, self.dt_init_floor, self.scan_method,
            self.eigenvalue_range, self.dtype, parent=None,
        )

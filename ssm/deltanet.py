"""Gated DeltaNet (Yang, Kautz, Hatamizadeh, ICLR 2025, "Gated Delta Networks: Improving Mamba2 with Delta Rule")
and Gated DeltaProduct (Siems et al. 2025, "DeltaProduct: Improving State-Tracking in Linear RNNs via Householder
Products"), resettable, with the negative-eigenvalue option of Grazzi et al. (ICLR 2025, "Unlocking State-Tracking
in Linear RNNs Through Negative Eigenvalues").

One layer, u `[T, *batch, d_model]`, H heads with keys of size K = head_dim and values of size V = expand_v * K,
n = n_householder (1: Gated DeltaNet). Per head the state S is `[K, V]` (the paper's `[d_v, d_k]` transposed):

  q, k, v = SiLU(causal depthwise conv1d (in_proj(u)))      (H K, n H K, n H V; conv without bias)
  q = L2norm(q) / sqrt(K),  k = L2norm(k)                    (x / sqrt(|x|^2 + 1e-6), per head)
  g_t = -exp(A_log) softplus(a_t + dt_bias),  alpha_t = exp(g_t)   (a = in_proj(u), one per head: Mamba-2's decay)
  beta_t = sigmoid(b_t), or 2 sigmoid(b_t) with eigenvalue_range "[-1,1]"  (b = in_proj(u), n per head)
  S_t = alpha_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T,  o_t = S_t^T q_t
  out = out_proj(RMSNorm(o) * SiLU(z))                       (z = in_proj(u); RMSNorm per head, scale [V] shared)

The eigenvalues of I - beta k k^T (|k| = 1) are 1 and 1 - beta: in [0, 1] with beta in [0, 1], in [-1, 1] with beta
in [0, 2] (Grazzi et al.). DeltaProduct takes n such steps per token, each with its own k_{t,j}, v_{t,j},
beta_{t,j}, and decays once: S_t = alpha_t prod_j (I - beta_{t,j} k_{t,j} k_{t,j}^T) S_{t-1} + writes, i.e. Gated
DeltaNet on the sequence interleaved n times (step (t, 1) carries g_t, the others g = 0; q reads after step
(t, n)), as the paper computes it.

Two forms of the recurrence. Step mode (T = 1) and the reference: `gated_delta_recurrent`, one `lax.scan` step per
recurrence step, the state zeroed by a select at a reset. Sequences: `gated_delta_chunked`, the chunkwise WY / UT
form (Yang et al. 2024, "Parallelizing Linear Transformers with the Delta Rule over Sequence Length"): inside a chunk
of L steps the pseudo-values u = beta (v - alpha S^T k) solve a unit lower-triangular system (I + A) u = ...,
A_ij = beta_i exp(G_i - G_j) k_i . k_j; each chunk maps its entering state affinely to its end state, and a
`lax.scan` over chunks passes the state on (the map is a K x K matrix, not a diagonal, so not `reset_scan`). A reset
sets the log decay to -inf at its step (as `ssd_chunked`), so every decay product crossing it is exactly 0:
the carried state and the earlier steps of the chunk reach nothing after it, and gradients across it are exactly 0.
Non-finite inputs are zeroed for the chunk algebra and put back as NaN on exactly the outputs they reach (per value
column, which the delta rule never mixes), as in `ssd_chunked`.

Initialisation as the reference (fla-org/flash-linear-attention, `GatedDeltaNet` / `GatedDeltaProduct` layers):
A ~ uniform[a_min, a_max] = [0, 16] per head (A_log = log A), dt bias the inverse softplus of dt ~ log-uniform
[0.001, 0.1] floored at 1e-4, conv kernels uniform in +-1/sqrt(d_conv), no biases, norm scale 1, expand_v = 2.

Simplifications: blocks are this package's Mamba blocks (pre-RMSNorm residual, final RMSNorm: `ResidualStack`),
without the SwiGLU MLP the papers' language models put after each layer; the projections are one fused `in_proj`
(q, k, v, z, a, b) with flax's default (LeCun normal) initialisation instead of the reference's; the defaults (2
heads of K = 32) are sized for RL, the papers' 1.3B models use 6 heads of K = 256, V = 512 at d_model 2048.
chunk_size counts recurrence steps (DeltaProduct: tokens times n_householder) and changes speed only.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssmrl.ssm.causal_conv import CausalConv, any_non_finite, last_reset
from ssmrl.ssm.eigenvalues import check_eigenvalue_range
from ssmrl.ssm.mamba import MambaState, ResidualStack, check_dt_range, check_positive, dt_bias_init
from ssmrl.ssm.mamba2 import GatedRMSNorm, a_log_init, segment_sums


def l2_normalize(x, eps: float = 1e-6):
    """x / sqrt(|x|^2 + eps) over the last axis."""
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


def write_strength(logits, eigenvalue_range: str):
    """beta: sigmoid(logits) in (0, 1) for "[0,1]", 2 sigmoid(logits) in (0, 2) for "[-1,1]"."""
    return nn.sigmoid(logits) * (2.0 if eigenvalue_range == "[-1,1]" else 1.0)


def gated_delta_recurrent(q, k, v, g, beta, resets, h0):
    """The gated delta rule step by step (`lax.scan`).

    q, k `[T, *batch, H, K]`, v `[T, *batch, H, V]`, g (log decay) and beta `[T, *batch, H]`, resets `[T, *batch]`,
    h0 `[*batch, H, K, V]` -> (o `[T, *batch, H, V]`, final state `[*batch, H, K, V]`).
    """

    def step(s, inputs):
        q_t, k_t, v_t, g_t, beta_t, reset_t = inputs
        s = jnp.where(reset_t[..., None, None, None], jnp.zeros((), s.dtype), s)  # a select: NaN does not pass
        s = jnp.exp(g_t)[..., None, None] * s
        u = beta_t[..., None] * (v_t - jnp.einsum("...kv,...k->...v", s, k_t))
        s = s + k_t[..., :, None] * u[..., None, :]
        return s, jnp.einsum("...kv,...k->...v", s, q_t)

    h, o = jax.lax.scan(step, h0, (q, k, v, g, beta, resets))
    return o, h


def gated_delta_chunked(q, k, v, g, beta, resets, h0, chunk_size: int):
    """The same as `gated_delta_recurrent`, by the chunkwise WY (UT transform) algorithm with chunks of
    `chunk_size` steps (see the module docstring)."""
    if chunk_size < 1:
        raise ValueError(f"gated_delta_chunked: chunk_size must be >= 1, got {chunk_size}")
    steps, batch = q.shape[0], q.shape[1:-2]
    heads, dk, dv = k.shape[-2], k.shape[-1], v.shape[-1]
    length = min(chunk_size, steps)
    pad = -steps % length
    chunks = (steps + pad) // length

    def split(x):  # [T, *batch, H, ...] -> [chunks, B, H, L, ...] with the batch dims flattened
        x = x.reshape((steps, -1) + x.shape[1 + len(batch) :])
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))  # padding steps: beta = 0, g = 0, the identity
        return jnp.moveaxis(x.reshape((chunks, length) + x.shape[1:]), 1, 3)

    zero = lambda mask, x: jnp.where(mask, jnp.zeros((), x.dtype), x)
    # g = -inf (alpha = 0) is a valid decay; NaN or +inf in g, beta or k poisons every value column of its head.
    bad_step = ~((g < jnp.inf) & jnp.isfinite(beta) & jnp.isfinite(k).all(-1))  # [T, *batch, H]
    bad = bad_step[..., None] | ~jnp.isfinite(v)  # [T, *batch, H, V]: a value column is poisoned on its own
    bad_h0 = any_non_finite(h0, -2)  # [*batch, H, V]
    g, beta, k, v = zero(bad_step, g), zero(bad_step, beta), zero(bad_step[..., None], k), zero(bad, v)
    h0 = zero(bad_h0[..., None, :], h0)
    since_reset = last_reset(resets, 1)[..., None, None]  # [T, *batch, 1, 1]: last reset at or before t, -1 if none
    poisoned = (last_reset(bad, 2) >= since_reset) | (bad_h0 & (since_reset < 0))  # [T, *batch, H, V]

    log_a = split(jnp.where(resets[..., None], -jnp.inf, g))  # [C, B, H, L]
    q, k, v, beta = split(q), split(k), split(v), split(beta)  # [C, B, H, L, K or V], [C, B, H, L]
    decay = jnp.exp(segment_sums(log_a))  # [C, B, H, L, L]: prod of alpha over (j, i], 0 across a reset or j > i
    from_start = jnp.exp(jnp.cumsum(log_a, axis=-1))  # [C, B, H, L]: prod of alpha over [0, i]
    strict = jnp.tril(jnp.ones((length, length), bool), -1)
    a = jnp.where(strict, beta[..., :, None] * decay * jnp.einsum("...ik,...jk->...ij", k, k), 0.0)
    rhs = jnp.concatenate([(beta * from_start)[..., None] * k, beta[..., None] * v], axis=-1)
    # (I + A) [W, U0] = rhs; the unit diagonal is implied (not read), so A can be passed as it is.
    w, u0 = jnp.split(jax.lax.linalg.triangular_solve(a, rhs, left_side=True, lower=True, unit_diagonal=True), [dk], -1)
    k_end = k * decay[..., -1, :, None]  # k_j weighted by the decay from j to the chunk's end
    transition = from_start[..., -1, None, None] * jnp.eye(dk, dtype=k.dtype) - jnp.einsum(
        "...lk,...lm->...km", k_end, w
    )  # [C, B, H, K, K]: S_end = transition S_in + inject
    inject = jnp.einsum("...lk,...lv->...kv", k_end, u0)  # [C, B, H, K, V]

    def across(s, chunk):
        m, c = chunk
        return m @ s + c, s

    h, h_in = jax.lax.scan(across, h0.reshape((-1, heads, dk, dv)), (transition, inject))  # h_in: entering states
    u = u0 - w @ h_in  # [C, B, H, L, V]: the pseudo-values
    scores = jnp.einsum("...ik,...jk->...ij", q, k) * decay
    o = from_start[..., None] * (q @ h_in) + scores @ u  # [C, B, H, L, V]
    o = jnp.moveaxis(o, 3, 1).reshape((chunks * length, -1, heads, dv))[:steps]
    o = jnp.where(poisoned, jnp.nan, o.reshape((steps, *batch, heads, dv)))
    h = jnp.where(poisoned[-1][..., None, :], jnp.nan, h.reshape((*batch, heads, dk, dv)))
    return o, h


def interleave(x, axis: int):
    """`[T, ..., n (at axis), ...]` -> `[T n, ...]`: the n entries of each step become consecutive steps."""
    x = jnp.moveaxis(x, axis, 1)
    return x.reshape((-1,) + x.shape[2:])


def spread(x, n: int, at: int):
    """`[T, ...]` -> `[T n, ...]`: x at sub-step `at` of each step, zeros (False) at the others."""
    return interleave(jnp.stack([x if j == at else jnp.zeros_like(x) for j in range(n)], axis=1), 1)


class GatedDeltaNetLayer(nn.Module):
    """One Gated DeltaNet (n_householder = 1) or Gated DeltaProduct layer: u `[T, *batch, d_model]` -> same shape."""

    d_model: int
    n_heads: int = 2
    head_dim: int = 32
    expand_v: int = 2
    d_conv: int = 4
    n_householder: int = 1
    eigenvalue_range: str = "[0,1]"
    chunk_size: int = 64
    a_min: float = 0.0
    a_max: float = 16.0
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4

    @property
    def head_v_dim(self) -> int:
        return self.expand_v * self.head_dim

    @property
    def conv_dim(self) -> int:
        return self.n_heads * (self.head_dim + self.n_householder * (self.head_dim + self.head_v_dim))

    @nn.nowrap
    def _check(self) -> str:
        """ValueError on a bad option; returns the canonical eigenvalue range."""
        owner = type(self).__name__
        check_positive(
            owner, d_model=self.d_model, n_heads=self.n_heads, head_dim=self.head_dim, expand_v=self.expand_v,
            d_conv=self.d_conv, n_householder=self.n_householder, chunk_size=self.chunk_size,
        )
        if not 0 <= self.a_min <= self.a_max or self.a_max <= 0:
            raise ValueError(f"{owner}: need 0 <= a_min <= a_max and a_max > 0, got a_min={self.a_min}, "
                             f"a_max={self.a_max}")
        check_dt_range(owner, self.dt_min, self.dt_max, self.dt_init_floor)
        return check_eigenvalue_range(owner, self.eigenvalue_range)

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]) -> MambaState:
        self._check()
        conv = CausalConv(self.conv_dim, self.d_conv, parent=None).initialize_carry(batch_shape)
        state = jnp.zeros((*batch_shape, self.n_heads, self.head_dim, self.head_v_dim), jnp.float32)
        return MambaState(conv=conv, ssm=state)

    @nn.compact
    def __call__(self, carry: MambaState, u, resets):
        """carry, u `[T, *batch, d_model]`, resets `[T, *batch]` -> (carry, `[T, *batch, d_model]`)."""
        eigenvalue_range = self._check()
        heads, n, dk, dv = self.n_heads, self.n_householder, self.head_dim, self.head_v_dim
        lead = u.shape[:-1]
        sizes = [self.conv_dim, heads * dv, heads, n * heads]  # q k v (convolved), z, a, b
        proj = nn.Dense(sum(sizes), use_bias=False, name="in_proj")(u)
        qkv, z, a, b = jnp.split(proj, list(itertools.accumulate(sizes[:-1])), axis=-1)
        conv, qkv = CausalConv(self.conv_dim, self.d_conv, use_bias=False, name="conv1d")(carry.conv, qkv, resets)
        q, k, v = jnp.split(nn.silu(qkv), [heads * dk, heads * dk * (1 + n)], axis=-1)
        q = l2_normalize(q.reshape((*lead, heads, dk))) * dk**-0.5
        k = l2_normalize(k.reshape((*lead, n, heads, dk)))
        v = v.reshape((*lead, n, heads, dv))
        beta = write_strength(b.reshape((*lead, n, heads)), eigenvalue_range)
        dt_bias = self.param("dt_bias", dt_bias_init(self.dt_min, self.dt_max, self.dt_init_floor), (heads,))
        a_log = self.param("A_log", a_log_init(self.a_min, self.a_max), (heads,))
        g = -jnp.exp(a_log) * nn.softplus(a + dt_bias)  # [T, *batch, H]: log alpha
        axis = len(lead)  # the sub-step axis of k, v and beta
        inputs = (spread(q, n, n - 1), interleave(k, axis), interleave(v, axis), spread(g, n, 0),
                  interleave(beta, axis), spread(resets, n, 0))
        if lead[0] == 1:
            o, state = gated_delta_recurrent(*inputs, carry.ssm)
        else:
            o, state = gated_delta_chunked(*inputs, carry.ssm, self.chunk_size)
        o = o[n - 1 :: n]  # [T, *batch, H, V]: read after each token's last step
        o = GatedRMSNorm(norm_before_gate=True, name="norm")(o, z.reshape((*lead, heads, dv)))
        y = nn.Dense(self.d_model, use_bias=False, name="out_proj")(o.reshape((*lead, heads * dv)))
        return MambaState(conv=conv, ssm=state), y


class GatedDeltaNetCore(ResidualStack):
    """Stacked Gated DeltaNet: x `[T, *batch, D]` -> Dense(d_model) -> n_layers residual blocks -> RMSNorm.

    Carry: a tuple of n_layers `MambaState`s (conv `[*batch, d_conv-1, conv_dim]`, ssm `[*batch, H, K, V]`).
    """

    n_heads: int = 2
    head_dim: int = 32
    expand_v: int = 2
    d_conv: int = 4
    eigenvalue_range: str = "[0,1]"
    chunk_size: int = 64
    a_min: float = 0.0
    a_max: float = 16.0
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4

    @nn.nowrap
    def householder_steps(self) -> int:
        return 1

    @nn.nowrap
    def layer(self) -> GatedDeltaNetLayer:
        return GatedDeltaNetLayer(
            self.d_model, self.n_heads, self.head_dim, self.expand_v, self.d_conv, self.householder_steps(),
            self.eigenvalue_range, self.chunk_size, self.a_min, self.a_max, self.dt_min, self.dt_max,
            self.dt_init_floor, parent=None,
        )


class GatedDeltaProductCore(GatedDeltaNetCore):
    """Stacked Gated DeltaProduct: `GatedDeltaNetCore` with `n_householder` Householder steps per token."""

    n_householder: int = 2

    @nn.nowrap
    def householder_steps(self) -> int:
        return self.n_householder

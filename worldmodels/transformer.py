"""A causal Transformer behind the core interface (`ssm/core.py`): the TSSM-style baseline of S4WM's comparison.

x `[T, *batch, D]` -> Dense(d_model) + sinusoidal position-in-episode encoding -> n_layers pre-LN blocks
(x + MHA(LN(x)), x + MLP(LN(x))) -> LayerNorm -> y `[T, *batch, d_model]`.

Attention is causal over a sliding window of the last `window` tokens (the token itself included) and never
crosses an episode boundary: a reset at t starts a new episode id, and keys of other episodes are masked out.
The carry is a fixed-size KV cache (the last `window` keys and values of every layer, with their episode ids,
-1 for empty slots) plus the current episode id and position, so running a sequence whole, in chunks or
one step at a time gives the same outputs. Masked scores are replaced (`jnp.where`), not added to, so an
output after a reset has exactly zero gradient to inputs before it.

Simplification: TSSM (Chen et al. 2022) attends over the whole sequence; here the window is finite (set it
to at least the sequence length to attend over everything).
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from ssmrl.ssm.core import RecurrentCore, check_carry, check_sequence


@chex.dataclass(frozen=True)
class KVCache:
    """keys, values `[*batch, n_layers, window, n_heads, head_dim]`; episode `[*batch, window]` int32 episode
    id of each cached token (-1: empty slot); current_episode, position `[*batch]` int32 (id and position in
    episode of the last token seen)."""

    keys: jax.Array
    values: jax.Array
    episode: jax.Array
    current_episode: jax.Array
    position: jax.Array


def sinusoidal(position, dim: int):
    """Sinusoidal encoding `[..., dim]` of integer positions `[...]` (Vaswani et al. 2017)."""
    freqs = jnp.exp(-jnp.log(10000.0) * jnp.arange(0, dim, 2) / dim)
    angles = position[..., None].astype(jnp.float32) * freqs
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], -1)[..., :dim]


class CausalTransformerCore(RecurrentCore):
    """Causal, episode-masked, sliding-window Transformer with a KV-cache carry (see the module docstring)."""

    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    window: int = 256
    mlp_ratio: int = 4

    @nn.nowrap
    def _check(self):
        for name in ("d_model", "n_layers", "n_heads", "window", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"CausalTransformerCore: {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads:
            raise ValueError(f"CausalTransformerCore: d_model={self.d_model} not divisible by n_heads={self.n_heads}")

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]) -> KVCache:
        self._check()
        batch_shape = tuple(batch_shape)
        head_dim = self.d_model // self.n_heads
        kv = jnp.zeros((*batch_shape, self.n_layers, self.window, self.n_heads, head_dim), jnp.float32)
        return KVCache(
            keys=kv, values=kv, episode=jnp.full((*batch_shape, self.window), -1, jnp.int32),
            current_episode=jnp.zeros(batch_shape, jnp.int32), position=jnp.full(batch_shape, -1, jnp.int32),
        )

    @nn.compact
    def __call__(self, carry: KVCache, x, resets=None):
        self._check()
        resets = check_sequence(x, resets, "CausalTransformerCore")
        check_carry(self, carry, x, "CausalTransformerCore")
        steps, window = x.shape[0], self.window
        # Episode ids and positions of the new tokens, batch-first [*batch, T].
        resets_b = jnp.moveaxis(resets, 0, -1)
        episode = carry.current_episode[..., None] + jnp.cumsum(resets_b, -1, dtype=jnp.int32)
        since_reset = jnp.arange(steps)
        last_reset = jax.lax.cummax(jnp.where(resets_b, since_reset, -1), axis=resets_b.ndim - 1)
        position = jnp.where(last_reset >= 0, since_reset - last_reset, carry.position[..., None] + 1 + since_reset)
        # Keys are the cached window followed by the new tokens: query i (index window + i) sees keys j with
        # i < j <= window + i, of its own episode (empty slots have id -1, never a query's).
        all_episode = jnp.concatenate([carry.episode, episode], -1)  # [*batch, W + T]
        q_idx, k_idx = jnp.arange(steps)[:, None] + window, jnp.arange(window + steps)[None, :]
        in_window = (k_idx <= q_idx) & (k_idx > q_idx - window)
        mask = in_window & (episode[..., :, None] == all_episode[..., None, :])

        h = jnp.moveaxis(nn.Dense(self.d_model, name="embed")(x), 0, -2)  # [*batch, T, D]
        h = h + sinusoidal(position, self.d_model)
        head_dim = self.d_model // self.n_heads
        new_keys, new_values = [], []
        for layer in range(self.n_layers):
            y = nn.LayerNorm(name=f"ln_attn_{layer}")(h)
            qkv = nn.DenseGeneral((3, self.n_heads, head_dim), name=f"qkv_{layer}")(y)  # [*batch, T, 3, H, Dh]
            q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
            keys = jnp.concatenate([carry.keys[..., layer, :, :, :], k], -3)  # [*batch, W + T, H, Dh]
            values = jnp.concatenate([carry.values[..., layer, :, :, :], v], -3)
            new_keys.append(keys[..., -window:, :, :])
            new_values.append(values[..., -window:, :, :])
            scores = jnp.einsum("...qhd,...khd->...hqk", q, keys) / jnp.sqrt(head_dim)
            scores = jnp.where(mask[..., None, :, :], scores, -1e30)
            weights = jax.nn.softmax(scores, axis=-1)
            weights = jnp.where(mask[..., None, :, :], weights, 0.0)
            attended = jnp.einsum("...hqk,...khd->...qhd", weights, values)
            h = h + nn.DenseGeneral(self.d_model, axis=(-2, -1), name=f"out_{layer}")(attended)
            y = nn.LayerNorm(name=f"ln_mlp_{layer}")(h)
            y = nn.Dense(self.d_model, name=f"mlp_out_{layer}")(
                nn.gelu(nn.Dense(self.mlp_ratio * self.d_model, name=f"mlp_in_{layer}")(y))
            )
            h = h + y
        h = nn.LayerNorm(name="ln_final")(h)
        new_carry = KVCache(
            keys=jnp.stack(new_keys, -4), values=jnp.stack(new_values, -4),
            episode=all_episode[..., -window:],
            current_episode=episode[..., -1], position=position[..., -1],
        )
        return new_carry, jnp.moveaxis(h, -2, 0)

"""Symlog two-hot regression (DreamerV3, Hafner et al. 2023): a scalar as a categorical over fixed bins.

A target y is encoded as symlog(y) = sign(y) log(1 + |y|) spread over its two nearest bins (weights by linear
interpolation, summing to 1); the loss is the cross-entropy of the predicted logits against that two-hot vector,
and the prediction is symexp of the softmax-weighted mean bin. Drama's reward head and critic use 255 bins evenly
spaced in [-20, 20] in symlog space (DreamerV3's and the official Drama code's `SymLogTwoHotLoss(255, -20, 20)`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def symlog(x):
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x):
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))


def twohot_bins(num_bins: int = 255, low: float = -20.0, high: float = 20.0):
    """The bin centres `[num_bins]` in symlog space; ValueError for fewer than 2 bins or low >= high."""
    if num_bins < 2 or not low < high:
        raise ValueError(f"two-hot needs num_bins >= 2 and low < high, got num_bins={num_bins}, low={low}, high={high}")
    return jnp.linspace(low, high, num_bins)


def twohot_encode(y, bins):
    """y `[...]` -> two-hot weights `[..., K]` of symlog(y) over `bins` `[K]` (clipped to the outer bins)."""
    x = jnp.clip(symlog(y), bins[0], bins[-1])
    upper = jnp.clip(jnp.searchsorted(bins, x, side="right"), 1, bins.shape[0] - 1)
    lower = upper - 1
    frac = (x - bins[lower]) / (bins[upper] - bins[lower])
    k = bins.shape[0]
    return jax.nn.one_hot(lower, k) * (1.0 - frac)[..., None] + jax.nn.one_hot(upper, k) * frac[..., None]


def twohot_loss(logits, y, bins):
    """Cross-entropy `[...]` of logits `[..., K]` against the two-hot encoding of targets y `[...]`."""
    return -jnp.sum(twohot_encode(y, bins) * jax.nn.log_softmax(logits, -1), -1)


def twohot_mean(logits, bins):
    """The prediction `[...]`: symexp of the expected bin under softmax(logits `[..., K]`)."""
    return symexp(jnp.sum(jax.nn.softmax(logits, -1) * bins, -1))

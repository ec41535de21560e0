"""Plain numpy pieces of the cores' reference implementations (float64, loops over time)."""

from __future__ import annotations

import numpy as np


def silu(x):
    return x / (1.0 + np.exp(-x))


def softplus(x):
    return np.logaddexp(0.0, x)


def conv_reference(kernel, bias, window, x, resets):
    """Loop over time with a rolling buffer of the last K-1 inputs, emptied on reset. [T, B, C]."""
    buf = np.array(window, np.float64)  # [B, K-1, C]
    ys = []
    for t in range(x.shape[0]):
        buf[np.asarray(resets[t])] = 0.0
        full = np.concatenate([buf, np.asarray(x[t])[:, None]], axis=1)  # [B, K, C]
        ys.append(bias + np.einsum("bkc,kc->bc", full, kernel))
        buf = full[:, 1:]
    return buf, np.stack(ys)


def conv_silu(params, window, x, resets):
    """SiLU of the reset-aware causal conv with `params` (kernel, and bias if it has one)."""
    p = {k: np.asarray(v, np.float64) for k, v in params.items()}
    return silu(conv_reference(p["kernel"], p.get("bias", 0.0), window, x, resets)[1])

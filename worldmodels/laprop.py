"""LaProp (Ziyin, Wang, Ueda 2020), the optimiser of DreamerV3 and of the official Drama code, as optax.

LaProp divides each gradient by the root of its running second moment *before* the momentum average:
v_t = b2 v + (1 - b2) g^2,  m_t = b1 m + (1 - b1) g / (sqrt(v^_t) + eps),  update = -lr m^_t (both bias-corrected).
`drama_optimizer` adds what Drama's two optimisers share: global-norm clipping and a linear learning-rate warmup
(lr * min(1, (step + 1) / warmup_steps), as `pytorch_warmup.LinearWarmup`).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax


def laprop(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-20) -> optax.GradientTransformation:
    """LaProp with a float or schedule learning rate."""
    return optax.chain(
        optax.scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        optax.ema(b1, debias=True),
        optax.scale_by_learning_rate(learning_rate),
    )


def drama_optimizer(lr: float, eps: float, grad_clip: float, warmup_steps: int) -> optax.GradientTransformation:
    """Global-norm clipping, then LaProp with a linear warmup over `warmup_steps` steps (0: none)."""
    if lr <= 0 or grad_clip <= 0 or warmup_steps < 0:
        raise ValueError(f"need lr > 0, grad_clip > 0 and warmup_steps >= 0, got lr={lr}, grad_clip={grad_clip}, "
                         f"warmup_steps={warmup_steps}")
    schedule = lambda step: lr * jnp.minimum(1.0, (step + 1.0) / max(warmup_steps, 1))
    return optax.chain(optax.clip_by_global_norm(grad_clip), laprop(schedule, eps=eps))

"""Test-wide settings: full float32 matmuls (no TF32 on GPU) and a small, deterministic hypothesis profile."""

import jax
from hypothesis import HealthCheck, settings

jax.config.update("jax_default_matmul_precision", "highest")

settings.register_profile(
    "ssmrl", max_examples=10, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ssmrl")

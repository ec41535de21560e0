"""Test-wide settings: a small, deterministic hypothesis profile (jit compiles make examples costly)."""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ssmrl", max_examples=15, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ssmrl")

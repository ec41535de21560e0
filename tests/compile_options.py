"""Compiler options for the tests that run one program for long (the learning tests, the env suites' rollouts):
XLA's default LLVM optimisation level, which the test-wide -O0 of tests/conftest.py would otherwise lower. Pass as
`jax.jit(f, compiler_options=FULL_OPTIMIZATION)`."""

FULL_OPTIMIZATION = {"xla_backend_optimization_level": 3}

"""Test-wide settings: LLVM at -O0 for XLA's code, full float32 matmuls (no TF32 on GPU) and a small,
deterministic hypothesis profile."""

import os

# Most tests compile many small programs and run each briefly, so compiling is most of their time: XLA's LLVM
# backend at -O0 compiles about 30% faster (measured: CPU time of tests/agents/test_ppo.py, test_train_cli.py,
# test_s4wm.py and test_s5.py 515 s -> 373 s on the CI kind of CPU). Programs that run long (the learning tests,
# the env suites' rollouts) compile at XLA's default level (tests.compile_options.FULL_OPTIMIZATION). Set before
# jax starts a backend; subprocesses inherit it; an XLA_FLAGS that names the level already wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

import jax  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")

settings.register_profile(
    "ssmrl", max_examples=10, deadline=None, derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("ssmrl")

# The longest modules on the CI kind of CPU (2026-12-07), scheduled first: pytest-xdist's loadscope hands out
# modules in collection order, so ending on short ones keeps both workers busy until the end. Unlisted modules
# follow in their usual order.
LONGEST_FIRST = (
    "tests/agents/test_ppo.py", "tests/agents/test_mappo.py", "tests/envs/test_popgym_games.py",
    "tests/ssm/test_mamba.py", "tests/envs/test_popgym_control.py", "tests/ssm/test_scan.py",
    "tests/ssmrl/test_distributed.py", "tests/reliability/test_bad_inputs.py", "tests/reliability/test_resets_nan.py",
    "tests/envs/test_registry.py", "tests/ssm/test_s4.py", "tests/ssm/test_s5.py", "tests/agents/test_evaluate.py",
    "tests/worldmodels/test_s4wm.py", "tests/ssm/test_deltanet.py", "tests/worldmodels/test_train_drama.py",
    "tests/agents/test_offline.py", "tests/envs/test_meta.py", "tests/worldmodels/test_drama.py",
    "tests/ssmrl/test_train_cli.py", "tests/ssm/test_scan_kernel.py",
)


def pytest_collection_modifyitems(items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: modules stay whole

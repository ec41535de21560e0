"""Data-parallel training over a device mesh: 1- and 4-device runs agree, sharded checkpoints restore on another
device count, metrics arrive once per update, and two processes on loopback train together (jax.distributed).

Device counts are fixed when jax starts, so the multi-device checks run in subprocesses with forced CPU devices.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import AbstractMesh, PartitionSpec

from ssmrl.agents.env_stack import EnvConfig
from ssmrl.agents.mappo import MAPPOConfig
from ssmrl.agents.ppo import PPOConfig, make_ppo
from ssmrl.distributed import initialize_from_env
from ssmrl.runner import RunSettings, abstract_state
from ssmrl.sharding import check_divisible, make_mesh, state_shardings
from tests.layout import ROOT
from tests.subprocesses import subprocess_env

TINY = dict(core="s5", core_kwargs={"d_model": 8, "state_size": 4, "n_layers": 1}, hidden=8, num_steps=8,
            update_epochs=2, num_minibatches=2, lr=1e-3)


def run_python(code: str, devices: int, extra_env: dict[str, str] | None = None, argv: tuple[str, ...] = ()
               ) -> subprocess.Popen:
    """`code` (with `sys.argv[1:] == argv`) in a fresh interpreter with `devices` forced CPU devices."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    env = subprocess_env(JAX_PLATFORMS="cpu", XLA_FLAGS=flags, **(extra_env or {}))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *argv], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen, timeout: float = 240) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"subprocess failed:\n{err[-4000:]}"
    return out


MESH_RUNS = """
import dataclasses, json, sys
import jax, numpy as np
from ssmrl.agents.env_stack import EnvConfig
from ssmrl.agents.ppo import PPOConfig, make_ppo
from ssmrl.checkpoint import Checkpointer
from ssmrl.runner import RunSettings, run, restore_state
from ssmrl.sharding import algorithm_mesh, make_mesh

out = sys.argv[1]
tiny = json.loads(sys.argv[2])
config = PPOConfig(env=EnvConfig(num_envs=8), total_timesteps=2 * 8 * tiny["num_steps"], **tiny)
algorithm = make_ppo(config)
result = {}
for name, devices, mesh in (("one", 1, ()), ("seed_data", 4, (2, 2))):
    settings = RunSettings(out_dir=f"{out}/{name}", num_seeds=2, checkpoint_every=1, num_devices=devices,
                           mesh=mesh, tensorboard=False, progress=False)
    state, metrics = run(algorithm, settings, {"name": name})
    rows = open(f"{out}/{name}/metrics.csv").read().splitlines()
    result[name] = {
        "params": [np.asarray(x).tolist() for x in jax.tree.leaves(state.params)],
        "metrics": {k: v.tolist() for k, v in metrics.items()},
        "rows": len(rows) - 1,
        "obs_spec": str(state.obs.sharding.spec), "params_spec": str(jax.tree.leaves(state.params)[0].sharding.spec),
        "devices": len(state.obs.sharding.device_set),
    }
with Checkpointer(f"{out}/seed_data/checkpoints") as checkpoints:
    restored = restore_state(checkpoints, None, algorithm, settings)
result["restored_on_one"] = {
    "params": [np.asarray(x).tolist() for x in jax.tree.leaves(restored.params)],
    "devices": len(restored.obs.sharding.device_set),
}
result["default_devices"] = [make_mesh().size, algorithm_mesh(dataclasses.replace(algorithm, batch_axes=None)).size]
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def mesh_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("mesh")
    process = run_python(MESH_RUNS, 4, argv=(str(out), json.dumps(TINY)))
    return json.loads(finish(process).splitlines()[-1])


def test_four_devices_give_the_one_device_parameters(mesh_runs):
    one, four = mesh_runs["one"], mesh_runs["seed_data"]
    assert one["devices"] == 1 and four["devices"] == 4
    for a, b in zip(one["params"], four["params"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for name, values in one["metrics"].items():
        np.testing.assert_allclose(values, four["metrics"][name], rtol=1e-4, atol=1e-5, err_msg=name)


def test_envs_are_sharded_over_data_and_parameters_replicated(mesh_runs):
    assert mesh_runs["seed_data"]["obs_spec"] == str(PartitionSpec("seed", "data"))
    assert mesh_runs["seed_data"]["params_spec"] == str(PartitionSpec("seed"))


def test_metrics_arrive_once_per_update_and_seed(mesh_runs):
    assert mesh_runs["one"]["rows"] == mesh_runs["seed_data"]["rows"] == 2 * 2  # 2 updates x 2 seeds


def test_default_mesh_is_all_devices_for_algorithms_with_envs(mesh_runs):
    assert mesh_runs["default_devices"] == [4, 1]


def test_sharded_checkpoint_restores_on_one_device(mesh_runs):
    restored = mesh_runs["restored_on_one"]
    assert restored["devices"] == 1
    assert restored["params"] == mesh_runs["seed_data"]["params"]


TWO_PROCESS = """
algo: ppo
checkpoint_every: 1
progress: false
tensorboard: false
ppo:
  env: {name: RepeatPrevious-Easy, num_envs: 4}
  core: gru
  core_kwargs: {features: 8}
  hidden: 8
  num_steps: 8
  update_epochs: 1
  num_minibatches: 2
  total_timesteps: 64
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_loopback_train_together(tmp_path):
    """jax.distributed with 2 local processes x 2 CPU devices (gloo collectives): one mesh of 4 devices."""
    (tmp_path / "tiny.yaml").write_text(TWO_PROCESS)
    address = f"127.0.0.1:{free_port()}"
    code = f"import sys; from ssmrl.cli import main; sys.exit(main(['train', {str(tmp_path / 'tiny.yaml')!r}, "
    code += f"'out_dir={tmp_path / 'run'}']))"
    processes = [run_python(code, 2, {"JAX_COORDINATOR_ADDRESS": address, "JAX_NUM_PROCESSES": "2",
                                      "JAX_PROCESS_ID": str(i)}) for i in range(2)]
    try:
        for process in processes:
            finish(process)
    finally:
        for process in processes:
            process.kill()
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 1 + 2  # header, then updates 1 and 2 written once (by process 0)
    assert [int(row.split(",")[0]) for row in rows[1:]] == [1, 2]
    assert (tmp_path / "run" / "checkpoints" / "2").is_dir()


def test_mesh_settings_are_checked():
    with pytest.raises(ValueError, match=f"num_devices={jax.device_count() + 1}"):
        make_mesh(jax.device_count() + 1)
    with pytest.raises(ValueError, match=r"mesh=\[2, 1\]"):
        make_mesh(1, (2, 1))
    with pytest.raises(ValueError, match="no env batch axis"):
        check_divisible(AbstractMesh((1, 2), ("seed", "data")), 2, set())


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 8), st.sets(st.integers(1, 16), min_size=1, max_size=3))
def test_seeds_and_env_batches_must_divide_over_the_mesh(seed_size, data_size, num_seeds, batch_sizes):
    mesh = AbstractMesh((seed_size, data_size), ("seed", "data"))
    bad_batches = sorted(n for n in batch_sizes if n % data_size)
    if num_seeds % seed_size:
        with pytest.raises(ValueError, match=f"num_seeds={num_seeds} "):
            check_divisible(mesh, num_seeds, batch_sizes)
    elif bad_batches:
        with pytest.raises(ValueError, match=f"N={bad_batches[0]} "):
            check_divisible(mesh, num_seeds, batch_sizes)
    else:
        check_divisible(mesh, num_seeds, batch_sizes)


def per_env_specs(config, num_seeds=1):
    algorithm = make_ppo(config)
    shardings = state_shardings(algorithm, make_mesh(1), abstract_state(algorithm, RunSettings(num_seeds=num_seeds)))
    return jax.tree.map(lambda s: s.spec == PartitionSpec("seed", "data"), shardings)


def test_ppo_marks_env_leaves_and_keeps_shared_statistics_replicated():
    specs = per_env_specs(PPOConfig(env=EnvConfig(num_envs=4, normalize_obs=True), **TINY))
    assert all(jax.tree.leaves(specs.obs)) and specs.reset and all(jax.tree.leaves(specs.carry))
    assert not any(jax.tree.leaves((specs.params, specs.opt_state, specs.key, specs.update, specs.episode_stats)))
    assert not specs.env_state.mean and not specs.env_state.var and not specs.env_state.count  # shared by all envs
    assert all(jax.tree.leaves(specs.env_state.env_state))


def test_mappo_marks_env_states_and_agent_sequences():
    """N envs of A agents: env states lead with N, observations and both cores' carries with N x A."""
    config = MAPPOConfig(env=EnvConfig(name="jaxmarl/MPE_simple_spread_v3", num_envs=2), **TINY)
    specs = per_env_specs(config)
    assert all(jax.tree.leaves(specs.env_state)) and all(jax.tree.leaves(specs.carry)) and specs.reset


@pytest.mark.parametrize(("environ", "message"), [
    ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234"}, "JAX_NUM_PROCESSES"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "'two'"),
    ({"JAX_COORDINATOR_ADDRESS": "h:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"}, "JAX_PROCESS_ID=2"),
])
def test_bad_process_environment_is_a_clear_error(environ, message):
    with pytest.raises(ValueError, match=message):
        initialize_from_env(environ)


def test_single_process_without_cluster_environment():
    assert initialize_from_env({"SLURM_NTASKS": "1"}) is False

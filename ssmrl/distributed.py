"""Multi-host runs: one process per host (or per GPU), joined by `jax.distributed` before any device is touched.

`initialize_from_env()` reads JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and
JAX_PROCESS_ID; without them it lets JAX detect a cluster it knows (SLURM, Open MPI, ...) and otherwise stays
single-process. After it, `jax.devices()` lists the devices of all processes and every process runs the same
program on its own slice of the mesh; only process 0 (`is_primary()`) writes logs and files.
"""

from __future__ import annotations

import os

import jax

ENV_KEYS = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_from_env(environ: dict[str, str] | None = None) -> bool:
    """Joins the multi-process run described by the environment; returns whether this run is multi-process.

    All three of ENV_KEYS set: a run of JAX_NUM_PROCESSES processes; none set: whatever JAX auto-detects (a SLURM
    job step with several tasks), else a single process. Some set: ValueError naming the missing ones.
    """
    environ = os.environ if environ is None else environ
    given = {key: environ[key] for key in ENV_KEYS if environ.get(key)}
    if given and len(given) < len(ENV_KEYS):
        missing = [key for key in ENV_KEYS if key not in given]
        raise ValueError(f"multi-process run: {sorted(given)} set but {missing} missing; set all of {list(ENV_KEYS)} "
                         "or none (cluster auto-detection, e.g. SLURM)")
    if given:
        num_processes, process_id = _as_int(given, "JAX_NUM_PROCESSES"), _as_int(given, "JAX_PROCESS_ID")
        if not 0 <= process_id < num_processes:
            raise ValueError(f"JAX_PROCESS_ID={process_id} must be in [0, JAX_NUM_PROCESSES={num_processes})")
        jax.distributed.initialize(given["JAX_COORDINATOR_ADDRESS"], num_processes, process_id)
        return True
    if _in_cluster(environ):
        jax.distributed.initialize()
        return True
    return False


def is_primary() -> bool:
    """Whether this process writes the run's files (process 0)."""
    return jax.process_index() == 0


def _as_int(given: dict[str, str], key: str) -> int:
    try:
        return int(given[key])
    except ValueError:
        raise ValueError(f"{key} must be an integer, got {given[key]!r}") from None


def _in_cluster(environ) -> bool:
    """A SLURM job step or Open MPI run of more than one task (those JAX detects and initialises itself)."""
    tasks = environ.get("SLURM_STEP_NUM_TASKS") or environ.get("SLURM_NTASKS") or environ.get("OMPI_COMM_WORLD_SIZE")
    return tasks is not None and tasks.isdigit() and int(tasks) > 1

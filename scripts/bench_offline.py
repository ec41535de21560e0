"""Cost of one update of the offline sequence policies (DT, Decision Mamba, Decision-S5), and of a whole run.

    python scripts/bench_offline.py                      # the four configs at their paper sizes (GPU)
    python scripts/bench_offline.py --seeds 3            # 3 seeds vmapped in one program, as `ssmrl train` runs them
    python scripts/bench_offline.py --configs configs/dm_brax.yaml train.batch_size=32
    python scripts/bench_offline.py --tiny               # CPU smoke run: small models, seconds

Each config trains on a synthetic dataset of `--rows` steps with hopper's shapes (11 observations, 3 actions,
episodes of 1000 steps; random values: the cost of an update does not depend on them). Rows, each jitted once and
timed as the median of `--reps` calls after a warm-up (compile excluded), `--seeds` vmapped: parameters, ms per update,
updates/s, the projected minutes of the config's `train.num_updates`, and the update's memory (XLA's compiled
estimate: arguments, outputs and temporaries, the dataset in the state included). Overrides (KEY=VALUE, as for
`ssmrl train`) apply to every config.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import jax
import numpy as np

from bench_cores import compiled_bytes
from bench_scan import timed
from ssmrl.agents.offline_data import write_dataset
from ssmrl.agents.offline_train import make_offline
from ssmrl.cli import resolve_config

CONFIGS = ["configs/dt_brax.yaml", "configs/dm_brax.yaml", "configs/dm_plain_brax.yaml", "configs/dm_s5_brax.yaml"]
TINY = ["model.d_model=32", "model.n_layers=1", "model.context=5", "train.batch_size=4", "train.num_updates=100",
        "train.steps_per_iter=50", "train.warmup_steps=10"]


def synthetic_dataset(path: Path, rows: int, episode: int = 1000, state_dim: int = 11, action_dim: int = 3) -> Path:
    """A dataset file of `rows` random steps in episodes of `episode` steps (the last one cut by a timeout)."""
    rng = np.random.default_rng(0)
    ends = (np.arange(rows) % episode) == episode - 1
    ends[-1] = True
    arrays = {"observations": rng.normal(size=(rows, state_dim)).astype(np.float32),
              "actions": rng.uniform(-1, 1, (rows, action_dim)).astype(np.float32),
              "rewards": rng.uniform(0, 3, rows).astype(np.float32), "terminals": np.zeros(rows, bool),
              "timeouts": ends}
    metadata = {"env": "brax/hopper", "env_kwargs": {}, "kind": "medium", "ref_min_score": 0.0,
                "ref_max_score": 3000.0}
    return write_dataset(path, arrays, metadata)


def bench(path: str, overrides: list[str], dataset: Path, seeds: int, reps: int) -> dict:
    """One config's row: algo, backbone, parameters, ms per update, updates/s, projected minutes, memory."""
    settings, config, _ = resolve_config(path, [*overrides, f"dataset.path={dataset}", "eval.num_episodes=0"])
    algorithm = make_offline(config)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    state = jax.jit(jax.vmap(algorithm.init))(keys)
    params = sum(x.size for x in jax.tree.leaves(state.params)) // seeds
    update = jax.jit(jax.vmap(algorithm.update)).lower(state).compile()
    ms = 1e3 * timed(update, state, reps=reps)
    return {"config": Path(path).stem, "algo": settings.algo, "backbone": config.model.backbone,
            "size": f"{config.model.d_model} x {config.model.n_layers}, K={config.model.context}, "
                    f"batch {config.train.batch_size}",
            "params": params, "ms": ms, "minutes": config.train.num_updates * ms / 6e4,
            "updates": config.train.num_updates, "memory": compiled_bytes(update) / 2**30}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides for every config")
    parser.add_argument("--configs", nargs="+", default=CONFIGS)
    parser.add_argument("--seeds", type=int, default=1, help="seeds vmapped in one program")
    parser.add_argument("--rows", type=int, default=100_000, help="steps in the synthetic dataset")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: small models (overrides come after)")
    args = parser.parse_args()
    overrides = (TINY if args.tiny else []) + args.overrides
    with tempfile.TemporaryDirectory() as tmp:
        dataset = synthetic_dataset(Path(tmp) / "synthetic-hopper.npz", args.rows)
        rows = [bench(path, overrides, dataset, args.seeds, args.reps) for path in args.configs]
    print(f"# {jax.devices()[0].device_kind}, jax {jax.__version__}, {args.seeds} seed(s) vmapped, synthetic hopper "
          f"dataset of {args.rows} steps{' --tiny' if args.tiny else ''} {' '.join(args.overrides)}")
    print("| config | algo | backbone | size | params | ms per update | updates/s | minutes per run | compiled GiB |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        memory = "-" if r["memory"] < 0 else f"{r['memory']:.2f}"
        print(f"| {r['config']} | {r['algo']} | {r['backbone']} | {r['size']} | {r['params'] / 1e6:.2f}M "
              f"| {r['ms']:.2f} | {1e3 / r['ms']:.0f} | {r['minutes']:.1f} ({r['updates']:,} updates) | {memory} |")


if __name__ == "__main__":
    main()

"""PPO on the POPGym suite: tasks x cores, seeds vmapped in one program; prints a markdown table as it goes.

    python scripts/popgym_sweep.py                                        # all tasks, Easy+Medium, popjaxrl budget
    python scripts/popgym_sweep.py --envs RepeatPrevious CountRecall --difficulties Easy \\
        --cores s5 gru --seeds 3 --total-timesteps 2000000 --jsonl runs/sweep.jsonl
    python scripts/popgym_sweep.py --summarize runs/sweep.jsonl             # pivot: env x core
    python scripts/popgym_sweep.py --envs Parity ModularAddition PermutationComposition \\
        --cores gru mamba2 "mamba2:eigenvalue_range=[-1,1]" env.prev_action_reward=false   # state tracking (below)

The base config (`--config`, default configs/ppo_popgym.yaml: popjaxrl's PPO settings) is overridden per run by
the env name and by the core preset below (width 256, as popjaxrl's S5 with 4 layers and state 256). POPGym
returns are normalised by the envs themselves to [-1, 1] (optimal 1), so they are reported as they are:
`final` = mean over seeds of the mean episode return of the last 5% of updates; `mmer` = the paper's MMER: per seed,
the maximum over updates (once that seed has finished an episode) of the mean episode return, then mean +- std over
seeds; `max` = the best update of the seed-mean curve (`curve`, one value per update). `SPS` = env steps per second of
all seeds together, compile time excluded. Each jsonl row also names its device, date, jax version and command.
`--envs` also takes the state-tracking families (`ssmrl.envs.state_tracking`), never run by default; sweep them
with `env.prev_action_reward=false`, since a memoryless policy solves them from its own previous action.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from ssmrl.agents.ppo import make_train
from ssmrl.cli import resolve_config
from ssmrl.envs.popgym.suite import POPGYM_ENVS
from ssmrl.envs.state_tracking.suite import STATE_TRACKING_ENVS
from state_tracking import parse_core  # scripts/state_tracking.py

CORE_PRESETS = {
    "s5": {"d_model": 256, "state_size": 256, "n_layers": 4},
    "s4d": {"d_model": 256, "state_size": 64, "n_layers": 4},
    "lru": {"d_model": 256, "state_size": 256, "n_layers": 4},
    "mamba": {"d_model": 256, "n_layers": 4},
    "mamba2": {"d_model": 256, "n_layers": 4},
    "gated_deltanet": {"d_model": 256, "n_layers": 4, "n_heads": 4, "head_dim": 64},
    "deltaproduct": {"d_model": 256, "n_layers": 4, "n_heads": 4, "head_dim": 64},
    "gru": {"features": 256},
    "lstm": {"features": 256},
    "mlp": {"features": 256},
}


def core_options(spec: str) -> tuple[str, dict]:
    """(registered core name, core_kwargs) of a --cores spec NAME[:KEY=VALUE...] (state_tracking.py's syntax, e.g.
    "mamba2:eigenvalue_range=[-1,1]"): the preset of NAME with the options on top."""
    name, options = parse_core(spec)
    if name not in CORE_PRESETS:
        raise ValueError(f"core {spec!r}: no preset for {name!r}; presets: {sorted(CORE_PRESETS)}")
    return name, {**CORE_PRESETS[name], **options}


def families(names=POPGYM_ENVS) -> list[str]:
    return sorted({name.rsplit("-", 1)[0] for name in names})


def run_one(base, env_name: str, core: str, seeds: int, total_timesteps: int | None) -> dict:
    """Trains `seeds` seeds of one (env, --cores choice); returns the row."""
    name, core_kwargs = core_options(core)
    config = dataclasses.replace(
        base, env=dataclasses.replace(base.env, name=env_name), core=name, core_kwargs=core_kwargs,
        **({"total_timesteps": total_timesteps} if total_timesteps else {}),
    )
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    start = time.perf_counter()
    compiled = jax.jit(jax.vmap(make_train(config))).lower(keys).compile()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    _, metrics = compiled(keys)
    returns = np.asarray(jax.device_get(metrics["episode_return"]))  # [seeds, updates]
    seed_started = np.cumsum(np.asarray(metrics["episodes"]), axis=1) > 0  # [seeds, updates]: after a first episode
    run_s = time.perf_counter() - start
    tail = max(1, returns.shape[1] // 20)
    final, curve = returns[:, -tail:].mean(axis=1), returns.mean(0)
    mmer = np.array([r[s].max() if s.any() else np.nan for r, s in zip(returns, seed_started, strict=True)])
    return {
        "env": env_name, "core": core, "seeds": seeds, "seed_ids": list(range(seeds)),  # split(PRNGKey(0), seeds)[i]
        "env_steps": config.num_updates * config.steps_per_update,
        "final_mean": float(final.mean()), "final_std": float(final.std()), "mmer_mean": float(mmer.mean()),
        "mmer_std": float(mmer.std()), "mmer_seeds": [round(float(m), 4) for m in mmer],
        "max": float(curve[seed_started.any(0)].max()) if seed_started.any() else float("nan"),
        "sps": seeds * config.num_updates * config.steps_per_update / run_s, "run_s": run_s, "compile_s": compile_s,
        "device": jax.devices()[0].device_kind, "date": datetime.date.today().isoformat(), "jax": jax.__version__,
        "command": " ".join(["python", *sys.argv]), "curve": [round(float(c), 3) for c in curve],
    }


def summarize(paths: list[str]) -> None:
    """Prints a pivot of sweep results (jsonl files; a later row of the same env and core wins): one table per
    difficulty, one row per env (alphabetical), final return per core, then the median SPS per core."""
    rows = [json.loads(line) for path in paths for line in Path(path).read_text().splitlines() if line.strip()]
    cores = sorted({r["core"] for r in rows}, key=lambda c: (list(CORE_PRESETS).index(parse_core(c)[0]), c))
    table = {(r["env"], r["core"]): r for r in rows}
    for difficulty in ("Easy", "Medium", "Hard"):
        envs = sorted({r["env"] for r in rows if r["env"].endswith("-" + difficulty)})
        if not envs:
            continue
        print(f"\n**{difficulty}**\n\n| env | " + " | ".join(cores) + " |\n|---|" + "---:|" * len(cores))
        for env in envs:
            cells = [f"{table[env, c]['final_mean']:.3f} +- {table[env, c]['final_std']:.3f}"
                     if (env, c) in table else "-" for c in cores]
            print(f"| {env.removesuffix('-' + difficulty)} | " + " | ".join(cells) + " |")
    sps = {c: np.median([r["sps"] for r in rows if r["core"] == c]) for c in cores}
    print("\n| median SPS (all seeds) | " + " | ".join(f"{sps[c]:,.0f}" for c in cores) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ppo_popgym.yaml")
    parser.add_argument("--envs", nargs="+", default=families(), help=f"POPGym families, from {families()}, or "
                        f"state-tracking ones, from {families(STATE_TRACKING_ENVS)}")
    parser.add_argument("--difficulties", nargs="+", default=["Easy", "Medium"])
    parser.add_argument("--cores", nargs="+", default=["s5", "gru", "lstm", "mlp"],
                        help=f"NAME[:KEY=VALUE...], NAME from {sorted(CORE_PRESETS)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--total-timesteps", type=int, default=None, help="per seed (default: the config's)")
    parser.add_argument("--deadline-min", type=float, default=None, help="start no new run after this many minutes")
    parser.add_argument("--jsonl", default=None, help="append one JSON line per run here")
    parser.add_argument("--summarize", nargs="+", default=None, help="only print a pivot table of these jsonl files")
    parser.add_argument("overrides", nargs="*", help="config overrides, as for `ssmrl train`")
    args = parser.parse_args()
    if args.summarize:
        summarize(args.summarize)
        return
    for spec in args.cores:
        try:
            core_options(spec)
        except ValueError as error:
            parser.error(str(error))
    known = families() + families(STATE_TRACKING_ENVS)
    unknown = sorted(set(args.envs) - set(known))
    if unknown:
        parser.error(f"unknown env families {unknown}; known: {known}")
    _, base, _ = resolve_config(args.config, args.overrides)
    began = time.perf_counter()
    print(f"# POPGym PPO sweep, {jax.devices()[0].device_kind}, {args.seeds} seeds", flush=True)
    print("| env | core | env steps/seed | final return | MMER | SPS | run s | compile s |", flush=True)
    print("|---|---|---:|---:|---:|---:|---:|---:|", flush=True)
    for family in args.envs:
        for difficulty in args.difficulties:
            for core in args.cores:
                if args.deadline_min and time.perf_counter() - began > 60 * args.deadline_min:
                    print(f"deadline reached; stopped before {family}-{difficulty} {core}", file=sys.stderr)
                    return
                row = run_one(base, f"{family}-{difficulty}", core, args.seeds, args.total_timesteps)
                print(f"| {row['env']} | {core} | {row['env_steps']:,} | {row['final_mean']:.3f} +- "
                      f"{row['final_std']:.3f} | {row['mmer_mean']:.3f} +- {row['mmer_std']:.3f} | {row['sps']:,.0f} | "
                      f"{row['run_s']:.1f} | {row['compile_s']:.1f} |", flush=True)
                if args.jsonl:
                    Path(args.jsonl).parent.mkdir(parents=True, exist_ok=True)
                    with open(args.jsonl, "a") as f:
                        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()

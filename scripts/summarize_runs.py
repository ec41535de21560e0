"""Final results of `ssmrl train` runs as one markdown table (and optionally JSON lines).

    python scripts/summarize_runs.py runs/mappo_smax_3m_s5 runs/mappo_smax_3m_gru --jsonl results.jsonl

Per run: env, core, env steps per seed, the final value of each metric (mean over the last `--tail` fraction of
updates per seed, then mean +- std over seeds), median env steps/s (all seeds together) and wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ssmrl.config import load_yaml
from ssmrl.logger import read_metrics

METRICS = ("episode_return", "win_rate", "episode_length")


def tail_mean(values: np.ndarray, tail: float) -> float:
    """Mean of the last `tail` fraction of `values` (at least one)."""
    return float(values[-max(1, int(len(values) * tail)):].mean())


def summarize_run(run_dir: Path, tail: float) -> dict:
    """One row: config facts and final metrics of the run in `run_dir`."""
    config = load_yaml(str(run_dir / "config.yaml"))
    section = config[config["algo"]]
    columns = read_metrics(run_dir)
    seed_of = columns["seed"]
    seeds = sorted(set(seed_of.tolist()))
    row = {
        "run": run_dir.name, "algo": config["algo"], "env": section.get("env", {}).get("name"),
        "env_kwargs": section.get("env", {}).get("kwargs", {}),
        "core": section.get("core") or section.get("model", {}).get("backbone"),  # world models: the backbone
        "seeds": len(seeds), "env_steps": int(columns["env_steps"].max()),
        "sps": float(np.nanmedian(columns["sps"])), "wall_s": float(columns["wall_time_s"].max()),
    }
    for metric in METRICS:
        if metric in columns:
            finals = [tail_mean(columns[metric][seed_of == seed], tail) for seed in seeds]
            row[metric] = [float(np.mean(finals)), float(np.std(finals))]
    return row


def markdown(rows: list[dict]) -> str:
    metrics = [m for m in METRICS if any(m in r for r in rows)]
    lines = ["| run | env | core | env steps/seed | " + " | ".join(metrics) + " | SPS | wall s |",
             "|---|---|---|---:|" + "---:|" * len(metrics) + "---:|---:|"]
    for r in rows:
        named = [str(v) for v in r["env_kwargs"].values() if isinstance(v, str)]  # scenario, layout, ...
        env = r["env"] + (f" ({', '.join(named)})" if named else "")
        cells = [f"{r[m][0]:.3f} +- {r[m][1]:.3f}" if m in r else "-" for m in metrics]
        lines.append(f"| {r['run']} | {env} | {r['core']} | {r['env_steps']:,} | " + " | ".join(cells)
                     + f" | {r['sps']:,.0f} | {r['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (the out_dir of `ssmrl train`)")
    parser.add_argument("--tail", type=float, default=0.05, help="fraction of last updates averaged (default 0.05)")
    parser.add_argument("--jsonl", type=Path, help="also append one JSON line per run here")
    args = parser.parse_args(argv)
    missing = [str(r) for r in args.runs if not (r / "metrics.csv").is_file()]
    if missing:
        print(f"summarize_runs: skipped {missing} (no metrics.csv)", file=sys.stderr)
    rows = [summarize_run(r, args.tail) for r in args.runs if str(r) not in missing]
    if not rows:
        sys.exit("summarize_runs: no run to summarize")
    print(markdown(rows))
    if args.jsonl:
        with args.jsonl.open("a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()

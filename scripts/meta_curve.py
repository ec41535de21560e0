"""In-context curves of meta-RL runs: mean return of trial 1, 2, ..., K within an episode, as a table and a PNG.

    ssmrl evaluate runs/meta_cartpole/s5 --split test --episodes 256      # writes RUN_DIR/eval.json; same for gru, mlp
    python scripts/meta_curve.py runs/meta_cartpole/{s5,gru,mlp} --out docs/meta_cartpole

Reads each run's `ssmrl evaluate` results (`RUN_DIR/eval.json`, or `--eval NAME`) of a meta-RL config: per training
seed, the returns `[episodes, K]` of the K trials (MetaRL's inner episodes) of each evaluated episode. Per seed the
curve is the mean over episodes; the table and the figure show the mean over seeds and its standard error (the
paper's error bars), or the std over episodes for a single seed. Writes OUT.md (markdown table: one row per trial,
one column per run), OUT.png and OUT.json (the curves), and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ssmrl.config import load_yaml


def load_curve(run_dir: Path, eval_name: str = "eval.json") -> dict:
    """{"run", "core", "env", "split", "checkpoint", "seeds", "episodes", "mean" [K], "err" [K], "per_seed"
    [S, K]} of one run's evaluation; ValueError if it is not a meta-RL evaluation."""
    path = run_dir / eval_name
    if not path.is_file():
        raise ValueError(f"{path} does not exist: run `ssmrl evaluate {run_dir} --split test` first")
    result = json.loads(path.read_text())
    per_seed_returns = [np.asarray(s["returns"], np.float64) for s in result["per_seed"]]
    if not per_seed_returns or per_seed_returns[0].ndim != 2:
        raise ValueError(f"{path} is not a meta-RL evaluation (its returns have no trial axis)")
    per_seed = np.stack([r.mean(axis=0) for r in per_seed_returns])  # [S, K]
    if len(per_seed) > 1:
        err = per_seed.std(axis=0, ddof=1) / np.sqrt(len(per_seed))
    else:
        err = per_seed_returns[0].std(axis=0)
    config_path = run_dir / "config.yaml"
    core = None
    if config_path.is_file():
        config = load_yaml(str(config_path))
        core = config.get(config.get("algo", "ppo"), {}).get("core")
    return {
        "run": str(run_dir), "core": core, "env": result.get("env"), "split": result["settings"].get("split"),
        "checkpoint": result.get("checkpoint"), "seeds": len(per_seed),
        "episodes": int(per_seed_returns[0].shape[0]), "mean": per_seed.mean(axis=0).tolist(),
        "err": err.tolist(), "per_seed": per_seed.tolist(),
    }


def label(curve: dict) -> str:
    name = Path(curve["run"]).name
    return name if curve["core"] in (None, name) else f"{name} ({curve['core']})"


def markdown(curves: list[dict]) -> str:
    """One row per trial, one column per run: mean +- error (standard error over seeds, or std over episodes)."""
    trials = max(len(c["mean"]) for c in curves)
    lines = ["| trial | " + " | ".join(label(c) for c in curves) + " |", "|---:|" + "---:|" * len(curves)]
    for k in range(trials):
        cells = [f"{c['mean'][k]:.3f} +- {c['err'][k]:.3f}" if k < len(c["mean"]) else "-" for c in curves]
        lines.append(f"| {k + 1} | " + " | ".join(cells) + " |")
    lines.append("| seeds x episodes | " + " | ".join(f"{c['seeds']} x {c['episodes']}" for c in curves) + " |")
    return "\n".join(lines)


def plot(curves: list[dict], path: Path) -> None:
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for curve in curves:
        mean, err = np.asarray(curve["mean"]), np.asarray(curve["err"])
        trials = np.arange(1, len(mean) + 1)
        ax.plot(trials, mean, marker="o", markersize=3, label=label(curve))
        ax.fill_between(trials, mean - err, mean + err, alpha=0.25)
    splits = sorted({str(c["split"]) for c in curves})
    envs = sorted({str(c["env"]) for c in curves})
    ax.set_title(f"{', '.join(envs)}: return per trial within an episode ({'/'.join(splits)} tasks)", fontsize=10)
    ax.set_xlabel("trial within the episode")
    ax.set_ylabel("mean return of the trial (band: s.e. over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders evaluated with `ssmrl evaluate`")
    parser.add_argument("--eval", default="eval.json", metavar="NAME",
                        help="the evaluation JSON in each run folder (default: eval.json)")
    parser.add_argument("--out", type=Path, required=True, metavar="PREFIX",
                        help="writes PREFIX.md, PREFIX.png and PREFIX.json")
    args = parser.parse_args(argv)
    try:
        curves = [load_curve(run, args.eval) for run in args.runs]
    except ValueError as error:
        sys.exit(f"meta_curve: {error}")
    table = markdown(curves)
    print(table)
    md, png, js = (Path(f"{args.out}{suffix}") for suffix in (".md", ".png", ".json"))
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(table + "\n")
    js.write_text(json.dumps(curves, indent=2) + "\n")
    plot(curves, png)
    print(f"wrote {md}, {png}, {js}")


if __name__ == "__main__":
    main()

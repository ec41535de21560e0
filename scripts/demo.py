"""`make demo`: recurrent PPO with an S5 core vs the memoryless MLP on POPGym RepeatPrevious-Easy, on CPU.

RepeatPrevious-Easy asks for the suit of the card seen 4 steps ago: optimal return 1.0, a random (or memoryless)
policy -0.5. Both runs use configs/ppo_s5_repeat_previous.yaml (400k env steps); the MLP run overrides the core.
Writes runs/demo/{s5,mlp}/ (config, metrics.csv/json, tensorboard, checkpoints, learning_curve.png) and
runs/demo/learning_curves.png with both curves.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ssmrl.cli import train
from ssmrl.logger import plot_curves

CONFIG = "configs/ppo_s5_repeat_previous.yaml"
RUNS = {"PPO-S5": [], "PPO-MLP (no memory)": ["core=mlp", "core_kwargs={features: 64}"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/demo")
    args = parser.parse_args(argv)
    out = Path(args.out)
    finals = {}
    for label, overrides in RUNS.items():
        run_dir = out / ("s5" if label == "PPO-S5" else "mlp")
        start = time.perf_counter()
        _, metrics = train(CONFIG, [f"out_dir={run_dir}", "overwrite=true", "progress=true", *overrides])
        finals[label] = (float(metrics["episode_return"][-1].mean()), time.perf_counter() - start)
    plot_curves([out / "s5", out / "mlp"], out / "learning_curves.png", labels=list(RUNS),
                title="POPGym RepeatPrevious-Easy (optimal 1.0, random -0.5)")
    print("\n| agent | final episode return | wall-clock s |\n|---|---:|---:|")
    for label, (final, seconds) in finals.items():
        print(f"| {label} | {final:.3f} | {seconds:.0f} |")
    print(f"\ncurves: {out / 'learning_curves.png'}")


if __name__ == "__main__":
    main()

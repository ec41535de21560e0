"""Memory world-model benchmark: train S4WM with each backbone on each suite, print a markdown table as it goes.

    python scripts/bench_worldmodel.py --quick --backbones s4 --suites four_rooms     # CPU smoke run, < 3 min
    python scripts/bench_worldmodel.py --updates 5000 --batch 8                       # GPU: the full grid
    python scripts/bench_worldmodel.py --suites two_rooms,four_rooms --backbones s4,gru,transformer \
        --jsonl runs/wm.jsonl --deadline-min 6                                        # one of several processes

Each row: backbone, suite, context C and horizon H, imagination MSE (per pixel, pixels in [0, 1]) averaged
over the imagined steps and at steps H/4, H/2, H, PSNR, reward-prediction accuracy in imagination and while
observing the context, training throughput (frames/s of the jitted update, compile excluded), imagination
throughput (frames/s of step-mode imagination from a context), and the paper's figure where PAPER_MSE has one.
`--jsonl PATH` appends one JSON object per trained (backbone, suite) with every row field; `--deadline-min M`
starts no new training after M minutes, so a grid split over concurrent processes ends on time.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import jax
import numpy as np

from ssmrl.worldmodels.train_s4wm import (
    EnvConfig,
    EvalConfig,
    ModelConfig,
    S4WMConfig,
    TrainConfig,
    build,
    make_s4wm,
    observe_context,
    score_imagination,
    summarize,
)

# suite -> (env, context C, horizon H, env kwargs). From the paper's project page: Four Rooms imagines 500 steps,
# and sequences are up to 2000 steps long (Ten Rooms here). The other C and H are ours, not checked against the
# paper (see docs/worldmodels.md).
SUITES = {
    "two_rooms": ("memory_wm/TwoRooms", 500, 500, {}),
    "four_rooms": ("memory_wm/FourRooms", 500, 500, {}),
    "ten_rooms": ("memory_wm/TenRooms", 1100, 900, {}),
    "four_rooms_teleport": ("memory_wm/FourRoomsTeleport", 500, 500, {}),
    "ten_rooms_teleport": ("memory_wm/TenRoomsTeleport", 1100, 900, {}),
    "distracting_memory": ("memory_wm/DistractingMemory", 100, 400, {}),
    "multi_doors_keys": ("memory_wm/MultiDoorsKeys", 250, 250, {}),
}
# --quick: the same suites shrunk to 60-step episodes at 16x16 pixels (teleport at step 30).
QUICK_SUITES = {
    name: (env, 30, 30, {**kwargs, "max_steps": 60, **({"teleport_at": 30} if "teleport" in name else {})})
    for name, (env, _, _, kwargs) in SUITES.items()
}
BACKBONES = ("s4", "s5", "mamba", "gru", "transformer")

# S4WM's published imagination MSE, (backbone, suite) -> value, each with the table it comes from. Empty: the
# paper's result tables (Deng, Park, Ahn 2023, arXiv 2307.02064) could not be read from the stored copies
# available when this was last checked (only the abstract and the project page), and no number is entered
# from memory. The table prints "-" where there is no entry.
PAPER_MSE: dict[tuple[str, str], float] = {}


def core_kwargs(backbone: str, width: int, layers: int, window: int) -> dict:
    """Comparable settings per backbone: width `width`, `layers` layers (one GRU layer of `width` units)."""
    if backbone == "gru":
        return {"features": width}
    if backbone == "transformer":
        return {"d_model": width, "n_layers": layers, "n_heads": 4, "window": window}
    if backbone in ("s4", "s5"):
        return {"d_model": width, "n_layers": layers, "state_size": 64}
    return {"d_model": width, "n_layers": layers}


def bench_one(backbone: str, suite: tuple, args) -> dict:
    """Train one backbone on one suite; evaluation scalars and throughputs."""
    env_name, context, horizon, kwargs = suite
    kwargs = dict(kwargs)
    max_steps = kwargs.pop("max_steps", 0)
    config = S4WMConfig(
        env=EnvConfig(name=env_name, image_size=args.image_size, max_steps=max_steps, kwargs=kwargs),
        model=ModelConfig(backbone=backbone, core_kwargs=core_kwargs(backbone, args.width, args.layers,
                                                                     context + horizon),
                          latent_dim=args.latent, units=args.units, cnn_depth=args.cnn_depth),
        train=TrainConfig(num_updates=args.updates, batch_size=args.batch, learning_rate=args.lr),
        eval=EvalConfig(context=context, horizon=horizon, num_episodes=args.eval_episodes),
    )
    algorithm, setup = make_s4wm(config), build(config)
    update = jax.jit(algorithm.update)
    state = jax.jit(algorithm.init)(jax.random.PRNGKey(args.seed))
    state, _ = jax.block_until_ready(update(state))  # compile
    start = time.perf_counter()
    for _ in range(args.updates - 1):
        state, metrics = update(state)
    jax.block_until_ready(state)
    train_fps = (args.updates - 1) * algorithm.steps_per_update / max(time.perf_counter() - start, 1e-9)

    # Evaluation, and imagination throughput: the timed second call of the step-mode imagination (decoding and
    # scoring included) of `horizon` frames for the eval batch, from the context carry.
    k_context, k_imagine = jax.random.split(jax.random.PRNGKey(config.eval.seed))
    context_fn = jax.jit(lambda p, k: observe_context(setup, p, k, context, horizon, args.eval_episodes))
    imagine_fn = jax.jit(lambda p, c, x, s, k: score_imagination(setup, p, c, x, s, k))
    carry, inputs, seen = context_fn(state.params, k_context)
    result = jax.block_until_ready(imagine_fn(state.params, carry, inputs, seen, k_imagine))
    start = time.perf_counter()
    jax.block_until_ready(imagine_fn(state.params, carry, inputs, seen, k_imagine))
    imag_fps = horizon * args.eval_episodes / max(time.perf_counter() - start, 1e-9)
    scores = summarize(result)
    mse = np.asarray(result["mse"])
    at = {f"mse@{h}": float(mse[h - 1]) for h in sorted({max(horizon // 4, 1), max(horizon // 2, 1), horizon})}
    return dict(scores, **at, train_fps=train_fps, imag_fps=imag_fps, context=context, horizon=horizon,
                final_loss=float(metrics["loss"]))


def names(known):
    """argparse type: a comma-separated list of names from `known` (ArgumentTypeError naming the bad ones)."""

    def parse(text: str) -> list[str]:
        picked = [name for name in text.split(",") if name]
        bad = [name for name in picked if name not in known]
        if bad or not picked:
            raise argparse.ArgumentTypeError(f"unknown {bad or [text]}; accepted: {', '.join(known)}")
        return picked

    return parse


def fmt(value) -> str:
    """A paper figure for the table: "-" when there is none."""
    return "-" if value is None else f"{value:.4f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", type=names(BACKBONES), default=[list(BACKBONES)],
                        help="space- or comma-separated, of: " + ", ".join(BACKBONES))
    parser.add_argument("--suites", nargs="+", type=names(list(SUITES)), default=[list(SUITES)],
                        help="space- or comma-separated, of: " + ", ".join(SUITES))
    parser.add_argument("--quick", action="store_true", help="tiny CPU settings (60-step episodes, 16x16 images)")
    parser.add_argument("--updates", type=int, default=None, help="training updates (default 2000; quick 15)")
    parser.add_argument("--batch", type=int, default=None, help="episodes per update (default 8; quick 4)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None, help="image side (default 64; quick 16)")
    parser.add_argument("--width", type=int, default=None, help="backbone width (default 256; quick 32)")
    parser.add_argument("--layers", type=int, default=None, help="backbone layers (default 4; quick 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jsonl", type=Path, default=None, help="append one JSON line per trained backbone x suite")
    parser.add_argument("--deadline-min", type=float, default=None,
                        help="start no new training after this many minutes (the running one finishes)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    args.backbones = [b for group in args.backbones for b in group]
    args.suites = [s for group in args.suites for s in group]
    quick = dict(updates=15, batch=4, eval_episodes=2, image_size=16, width=32, layers=1, latent=8, units=64,
                 cnn_depth=8, lr=1e-3)
    full = dict(updates=2000, batch=8, eval_episodes=8, image_size=64, width=256, layers=4, latent=32, units=256,
                cnn_depth=32)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name, None) is None or (args.quick and name not in ("updates", "batch", "eval_episodes",
                                                                               "image_size", "width", "layers")):
            setattr(args, name, value)
    if args.updates < 2:
        raise ValueError(f"--updates must be >= 2 (the first one compiles), got {args.updates}")
    suites = QUICK_SUITES if args.quick else SUITES
    device = jax.devices()[0].device_kind
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    print(f"device: {device}; {settings}")
    print("| backbone | suite | C | H | MSE | MSE at H/4, H/2, H | PSNR | reward acc (imagined, context) "
          "| train frames/s | imagine frames/s | paper MSE |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    skipped = []
    for suite in args.suites:
        for backbone in args.backbones:
            if args.deadline_min is not None and time.monotonic() - start > 60.0 * args.deadline_min:
                skipped.append(f"{backbone}/{suite}")
                continue
            began = time.monotonic()
            row = bench_one(backbone, suites[suite], args)
            at = ", ".join(f"{v:.4f}" for k, v in row.items() if k.startswith("mse@"))
            paper = PAPER_MSE.get((backbone, suite))
            print(f"| {backbone} | {suite} | {row['context']} | {row['horizon']} | {row['mse']:.4f} | {at} "
                  f"| {row['psnr']:.2f} | {row['reward_accuracy']:.3f}, {row['context_reward_accuracy']:.3f} "
                  f"| {row['train_fps']:.0f} | {row['imag_fps']:.0f} | {fmt(paper)} |", flush=True)
            if args.jsonl is not None:
                record = dict(backbone=backbone, suite=suite, env=suites[suite][0], **row, paper_mse=paper,
                              seconds=time.monotonic() - began, device=device, settings=settings)
                record = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in record.items()}
                args.jsonl.parent.mkdir(parents=True, exist_ok=True)
                with args.jsonl.open("a") as f:
                    f.write(json.dumps(record) + "\n")
    if skipped:
        print(f"deadline of {args.deadline_min} min reached; not started: {' '.join(skipped)}")


if __name__ == "__main__":
    main()

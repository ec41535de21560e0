"""Memory world-model benchmark: train S4WM with each backbone on each suite, print a markdown table as it goes.

    python scripts/bench_worldmodel.py --quick --backbones s4 --suites four_rooms     # CPU smoke run, < 3 min
    python scripts/bench_worldmodel.py --updates 5000 --batch 8                       # GPU: the full grid

Each row: backbone, suite, context C and horizon H, imagination MSE (per pixel, pixels in [0, 1]) averaged
over the imagined steps and at steps H/4, H/2, H, PSNR, reward-prediction accuracy, training throughput
(frames/s of the jitted update, compile excluded) and imagination throughput (frames/s of step-mode
imagination from a context), and the paper's figure where one is recorded in PAPER_MSE.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from worldmodels.data import collect, model_inputs
from worldmodels.s4wm import imagine
from worldmodels.train_s4wm import (
    EnvConfig,
    EvalConfig,
    ModelConfig,
    S4WMConfig,
    TrainConfig,
    build,
    evaluate_imagination,
    make_s4wm,
    observe,
    summarize,
)

# suite -> (env, context C, horizon H, env kwargs): the evaluation settings of the paper's suites.
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

# S4WM's published imagination MSE, (backbone, suite) -> value. Left empty: the paper's tables could not be
# checked offline when this script was written, and numbers are not copied from memory. Fill in from the
# paper (Deng, Park, Ahn 2023) before citing; the table prints "-" where there is no entry.
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

    key = jax.random.PRNGKey(config.eval.seed)
    result = jax.jit(lambda p, k: evaluate_imagination(setup, p, k, context, horizon, args.eval_episodes))(
        state.params, key)
    scores = summarize(result)
    mse = np.asarray(result["mse"])
    at = {f"mse@{h}": float(mse[h - 1]) for h in sorted({max(horizon // 4, 1), max(horizon // 2, 1), horizon})}

    # Imagination throughput: step-mode rollout of `horizon` frames for the eval batch, from a context carry.
    inputs = model_inputs(collect(setup.env, setup.env_params, key, args.eval_episodes, context + horizon),
                          setup.env.num_actions)
    carry, _ = jax.jit(lambda p, x: observe(setup, p, jax.tree.map(lambda a: a[:context], x), key))(
        state.params, inputs)
    run = jax.jit(lambda p, c, a: imagine(setup.model, p, c, a, key)[1]["frame"])
    actions = inputs["prev_actions"][context:]
    jax.block_until_ready(run(state.params, carry, actions))
    start = time.perf_counter()
    jax.block_until_ready(run(state.params, carry, actions))
    imag_fps = horizon * args.eval_episodes / max(time.perf_counter() - start, 1e-9)
    return dict(scores, **at, train_fps=train_fps, imag_fps=imag_fps, context=context, horizon=horizon,
                final_loss=float(metrics["loss"]) if args.updates > 1 else float("nan"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=BACKBONES)
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--quick", action="store_true", help="tiny CPU settings (60-step episodes, 16x16 images)")
    parser.add_argument("--updates", type=int, default=None, help="training updates (default 2000; quick 15)")
    parser.add_argument("--batch", type=int, default=None, help="episodes per update (default 8; quick 4)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    quick = dict(updates=15, batch=4, eval_episodes=2, image_size=16, width=32, layers=1, latent=8, units=64,
                 cnn_depth=8, lr=1e-3)
    full = dict(updates=2000, batch=8, eval_episodes=8, image_size=64, width=256, layers=4, latent=32, units=256,
                cnn_depth=32)
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name, None) is None or (args.quick and name not in ("updates", "batch", "eval_episodes")):
            setattr(args, name, value)
    if args.updates < 2:
        raise ValueError(f"--updates must be >= 2 (the first one compiles), got {args.updates}")
    suites = QUICK_SUITES if args.quick else SUITES
    print(f"device: {jax.devices()[0].device_kind}; {vars(args)}")
    print("| backbone | suite | C | H | MSE | MSE at H/4, H/2, H | PSNR | reward acc | train frames/s "
          "| imagine frames/s | paper MSE |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for suite in args.suites:
        for backbone in args.backbones:
            row = bench_one(backbone, suites[suite], args)
            at = ", ".join(f"{v:.4f}" for k, v in row.items() if k.startswith("mse@"))
            paper = PAPER_MSE.get((backbone, suite))
            print(f"| {backbone} | {suite} | {row['context']} | {row['horizon']} | {row['mse']:.4f} | {at} "
                  f"| {row['psnr']:.2f} | {row['reward_accuracy']:.3f} | {row['train_fps']:.0f} "
                  f"| {row['imag_fps']:.0f} | {'-' if paper is None else f'{paper:.4f}'} |", flush=True)


if __name__ == "__main__":
    main()

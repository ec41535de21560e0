"""`make demo`: the resettable scan and the cores at work, on CPU in about two minutes.

1. Times `reset_scan`'s methods (a small `bench_scan` table).
2. Trains S5, GRU and LSTM cores (and a memoryless MLP) on a supervised memory task with episode resets
   inside every sequence: recall the symbol seen `lag` steps earlier in the current episode (class 0 where
   the episode is younger than `lag`). Writes `metrics.csv` and `learning_curves.png` to --out and prints
   a table of final accuracy.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import optax

import bench_scan
from ssm import make_core

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SYMBOLS = 4


def recall_batch(key, steps: int, batch: int, lag: int, reset_prob: float):
    """x `[T, B, SYMBOLS+1]` (one-hot symbol + episode-start flag), resets `[T, B]`, targets `[T, B]`."""
    ks, kr = jax.random.split(key)
    symbols = jax.random.randint(ks, (steps, batch), 1, SYMBOLS + 1)
    resets = jax.random.bernoulli(kr, reset_prob, (steps, batch)).at[0].set(True)
    episode = jnp.cumsum(resets, axis=0)
    lagged = jnp.roll(symbols, lag, axis=0)
    same_episode = (jnp.roll(episode, lag, axis=0) == episode) & (jnp.arange(steps)[:, None] >= lag)
    targets = jnp.where(same_episode, lagged, 0)
    x = jnp.concatenate([jax.nn.one_hot(symbols - 1, SYMBOLS), resets[..., None]], -1)
    return x, resets, targets


class Classifier(nn.Module):
    """A core (or an MLP when `core` is None) followed by a linear readout over SYMBOLS+1 classes."""

    core: nn.Module | None

    @nn.compact
    def __call__(self, x, resets):
        if self.core is None:
            y = nn.relu(nn.Dense(64)(x))
        else:
            _, y = self.core(self.core.initialize_carry(x.shape[1:-1]), x, resets)
        return nn.Dense(SYMBOLS + 1)(y)


def train(name, model, args, key):
    x, resets, targets = recall_batch(key, args.steps, args.batch, args.lag, args.reset_prob)
    params = model.init(jax.random.key(1), x, resets)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(args.lr))
    opt_state = opt.init(params)

    def loss_fn(params, x, resets, targets):
        logits = model.apply(params, x, resets)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
        return loss, jnp.mean(jnp.argmax(logits, -1) == targets)

    @jax.jit
    def update(params, opt_state, key):
        batch = recall_batch(key, args.steps, args.batch, args.lag, args.reset_prob)
        (loss, acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, acc

    rows, start = [], time.perf_counter()
    for i, k in enumerate(jax.random.split(key, args.updates)):
        params, opt_state, loss, acc = update(params, opt_state, k)
        if i % 10 == 0 or i == args.updates - 1:
            rows.append(dict(core=name, update=i, loss=float(loss), accuracy=float(acc)))
    n_params = sum(p.size for p in jax.tree.leaves(params))
    return rows, n_params, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--updates", type=int, default=400)
    parser.add_argument("--steps", type=int, default=64, help="sequence length T")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lag", type=int, default=4)
    parser.add_argument("--reset-prob", type=float, default=0.05)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    print("== reset_scan methods on this machine ==")
    bench_scan.main(["--steps", "128", "1024", "--sizes", "16x64", "--dtypes", "complex64", "--reps", "3"])

    models = {
        "s5": make_core("s5", d_model=32, n_layers=2, state_size=32),
        "gru": make_core("gru", features=32),
        "lstm": make_core("lstm", features=32),
        "mlp (no memory)": None,
    }
    results, curves = [], []
    for name, core in models.items():
        print(f"training {name} ...", flush=True)
        rows, n_params, seconds = train(name, Classifier(core), args, jax.random.key(0))
        curves += rows
        results.append((name, n_params, rows[-1]["accuracy"], rows[-1]["loss"], seconds))

    with open(args.out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["core", "update", "loss", "accuracy"])
        writer.writeheader()
        writer.writerows(curves)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in models:
        pts = [r for r in curves if r["core"] == name]
        ax.plot([r["update"] for r in pts], [r["accuracy"] for r in pts], label=name)
    ax.set(xlabel="update", ylabel="accuracy", title=f"recall the symbol {args.lag} steps back, with resets")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "learning_curves.png", dpi=120)

    print(f"\n== memory task: recall lag {args.lag}, T={args.steps}, {args.updates} updates ==\n")
    print("| core | parameters | final accuracy | final loss | train seconds |")
    print("|---|---:|---:|---:|---:|")
    for name, n_params, acc, loss, seconds in results:
        print(f"| {name} | {n_params} | {acc:.3f} | {loss:.3f} | {seconds:.1f} |")
    print(f"\nwrote {args.out / 'metrics.csv'} and {args.out / 'learning_curves.png'}")


if __name__ == "__main__":
    main()

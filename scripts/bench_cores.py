"""Benchmark every registered core: forward and forward+backward time and compiled memory.

    python scripts/bench_cores.py                      # T in {128, 1024, 8192}, batch 64, width 128
    python scripts/bench_cores.py --cores s5 gru --steps 128

One layer of each core at width 128 (`d_model`, or `features` for the RNNs), default state sizes, random
inputs with 1% resets. Memory is XLA's compiled estimate for the forward+backward program (arguments,
outputs and temporaries), the same on every backend. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime

import jax
import jax.numpy as jnp

from bench_scan import timed
from ssmrl.ssm import CORES, make_core


def core_config(name: str, width: int) -> dict:
    """Width-`width`, one-layer settings for the core registered as `name`."""
    fields = {f.name for f in dataclasses.fields(CORES[name])}
    cfg = {"features": width} if "features" in fields else {"d_model": width}
    if "n_layers" in fields:
        cfg["n_layers"] = 1
    return cfg


def compiled_bytes(executable) -> int:
    """XLA's memory estimate of a compiled program: arguments, outputs and temporaries (-1 where it gives none)."""
    stats = executable.memory_analysis()
    if stats is None:
        return -1
    return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", nargs="+", default=sorted(CORES), choices=sorted(CORES))
    parser.add_argument("--steps", type=int, nargs="+", default=[128, 1024, 8192])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)

    device = jax.devices()[0]
    print(f"\n# cores, {device.platform} ({device.device_kind}), jax {jax.__version__}, {datetime.date.today()}, "
          f"batch {args.batch}, width {args.width}, one layer\n")
    print("| core | T | fwd ms | fwd+bwd ms | fwd+bwd memory MiB | parameters |")
    print("|---|---:|---:|---:|---:|---:|", flush=True)
    for name in args.cores:
        core = make_core(name, **core_config(name, args.width))
        for steps in args.steps:
            kx, kr = jax.random.split(jax.random.key(0))
            x = jax.random.normal(kx, (steps, args.batch, args.width))
            resets = jax.random.bernoulli(kr, 0.01, (steps, args.batch))
            carry = core.initialize_carry((args.batch,))
            params = core.init(jax.random.key(1), carry, x, resets)
            fwd = lambda p, x, r, core=core, carry=carry: core.apply(p, carry, x, r)[1]
            loss = lambda p, x, r, fwd=fwd: jnp.mean(fwd(p, x, r) ** 2)
            grad = jax.grad(loss)
            try:
                t_fwd = timed(jax.jit(fwd), params, x, resets, reps=args.reps)
                grad_program = jax.jit(grad).lower(params, x, resets).compile()
                t_bwd = timed(grad_program, params, x, resets, reps=args.reps)
                mem = compiled_bytes(grad_program)
            except Exception as err:  # noqa: BLE001 - e.g. out of memory: a row that says so
                print(f"| {name} | {steps} | failed: {type(err).__name__} | | | |", flush=True)
                continue
            n_params = sum(p.size for p in jax.tree.leaves(params))
            print(
                f"| {name} | {steps} | {t_fwd * 1e3:.2f} | {t_bwd * 1e3:.2f} | {mem / 2**20:.0f} | {n_params} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

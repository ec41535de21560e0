"""Benchmark `reset_scan` methods: time and achieved bandwidth, forward and forward+backward.

    python scripts/bench_scan.py                 # preset for the default backend (cpu or gpu)
    python scripts/bench_scan.py --steps 1024 --sizes 64x1024 --dtypes complex64
    python scripts/bench_scan.py --methods pallas --pallas-layouts 512x4 256x8 1024x4x8 --no-grad   # tuning

Bandwidth counts the bytes a fused scan must move: read a and b, write h (resets are negligible), and is
compared with the device's measured copy bandwidth (read + write of one large array). The method
"associative_flag" is the common alternative that carries a full-size reset flag as a third scan element instead
of folding the reset into `a` ("associative" folds it and carries the flag only at the resets' shape); "pallas" is
the fused kernel (GPU only: off GPU it would run in interpret mode, which
says nothing about speed, so it is skipped). `--pallas-layouts BLOCKxUNROLL[xWARPS] ...` adds rows for the
kernel with those layouts next to its default one. "pallas-planes" is the kernel's planar entry point
(`pallas_reset_scan_planes`), timed on inputs that are already real and imaginary float32 planes, as S5 and
LRU hold them: no complex split or merge around the kernel. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from ssmrl.ssm.kernels import on_gpu, pallas_reset_scan, pallas_reset_scan_planes, to_planes
from ssmrl.ssm.scan import METHODS, reset_scan

PRESETS = {
    "cpu": dict(sizes=["16x256", "64x1024"], dtypes=["float32", "complex64"], max_elements=2**24),
    "gpu": dict(sizes=["16x256", "64x1024", "1024x1024"], dtypes=["float32", "complex64"], max_elements=2**30),
    # T=1024 x 1024x1024 complex64 (8 GiB an array) and T=16384 x 64x1024 complex64 run out of memory
    # forward+backward on an 80 GiB H100 with XLA's scans; they stay in the table as failed rows.
}


def timed(fn, *args, reps: int) -> float:
    """Median wall time in seconds of a compiled call (compile and one warm-up excluded)."""
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_bandwidth(reps: int) -> float:
    """GB/s of x -> x + 1 on a 1 GiB (GPU) or 256 MiB (CPU) float32 array, counting read + write."""
    n = 2**28 if jax.default_backend() != "cpu" else 2**26
    x = jnp.zeros((n,), jnp.float32)
    seconds = timed(jax.jit(lambda x: x + 1.0), x, reps=reps)
    return 2 * x.nbytes / seconds / 1e9


def make_inputs(steps, batch, state, dtype, key):
    ka, kb, kr = jax.random.split(key, 3)
    shape = (steps, batch, state)
    a = jax.random.uniform(ka, shape, minval=0.5, maxval=1.0).astype(dtype)
    b = jax.random.normal(kb, shape).astype(dtype)
    resets = jax.random.bernoulli(kr, 0.01, (steps, batch))
    return a, b, resets


PLANAR = "pallas-planes"


def scan_variants(methods, pallas_layouts, chunk):
    """{row name: scan(a, b, resets)}: the chosen methods, then the kernel at each extra layout. The planar row
    takes and returns tuples of planes."""
    variants = {m: functools.partial(reset_scan, method=m, chunk_size=chunk) for m in methods if m != PLANAR}
    if PLANAR in methods:
        variants[PLANAR] = pallas_reset_scan_planes
    for layout in pallas_layouts:
        parts = layout.lower().split("x")
        if len(parts) not in (2, 3) or not all(p.isdigit() for p in parts):
            raise ValueError(f"--pallas-layouts: {layout!r} is not BLOCKxUNROLL or BLOCKxUNROLLxWARPS (e.g. 512x4)")
        knobs = dict(zip(("block_size", "unroll", "num_warps"), map(int, parts), strict=False))
        variants[f"pallas {layout}"] = functools.partial(pallas_reset_scan, **knobs)
    return variants


def main(argv=None):
    preset = PRESETS["cpu" if jax.default_backend() == "cpu" else "gpu"]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[128, 1024, 16384], help="sequence lengths T")
    parser.add_argument("--sizes", nargs="+", default=preset["sizes"], help="BxP (batch x state) pairs")
    parser.add_argument("--dtypes", nargs="+", default=preset["dtypes"], choices=["float32", "complex64"])
    methods = [m for m in METHODS if m != "auto"] + [PLANAR]
    parser.add_argument("--methods", nargs="+", default=methods, choices=methods)
    parser.add_argument("--chunk", type=int, default=64, help="chunk size of the chunked methods")
    parser.add_argument("--pallas-layouts", nargs="*", default=[], metavar="BLOCKxUNROLL[xWARPS]",
                        help="extra kernel layouts to time (GPU only), e.g. 512x4 1024x2x8")
    parser.add_argument("--max-elements", type=int, default=preset["max_elements"], help="skip larger T*B*P")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-grad", action="store_true", help="time the forward pass only")
    args = parser.parse_args(argv)
    if not on_gpu() and ({"pallas", PLANAR} & set(args.methods) or args.pallas_layouts):
        print("# pallas skipped: off GPU the kernel runs in interpret mode, not worth timing", file=sys.stderr)
        args.methods = [m for m in args.methods if m not in ("pallas", PLANAR)]
        args.pallas_layouts = []
    variants = scan_variants(args.methods, args.pallas_layouts, args.chunk)

    device = jax.devices()[0]
    copy = copy_bandwidth(args.reps)
    print(f"\n# reset_scan, {device.platform} ({device.device_kind}), jax {jax.__version__}, "
          f"{datetime.date.today()}, copy bandwidth {copy:.0f} GB/s, chunk {args.chunk}\n")
    print("| method | dtype | T | B | P | fwd ms | fwd GB/s | % of copy | fwd+bwd ms |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    for dtype_name in args.dtypes:
        dtype = jnp.dtype(dtype_name)
        for size in args.sizes:
            batch, state = (int(v) for v in size.lower().split("x"))
            for steps in args.steps:
                if steps * batch * state > args.max_elements:
                    continue
                a, b, resets = make_inputs(steps, batch, state, dtype, jax.random.key(0))
                moved = 3 * a.nbytes
                for method, scan in variants.items():
                    head = f"| {method} | {dtype_name} | {steps} | {batch} | {state} |"
                    inputs = (to_planes(a), to_planes(b), resets) if method == PLANAR else (a, b, resets)
                    try:
                        t_fwd = timed(jax.jit(scan), *inputs, reps=args.reps)
                        t_bwd = float("nan")
                        if not args.no_grad:
                            loss = lambda a, b, r, scan=scan: sum(jnp.sum(jnp.abs(x) ** 2)
                                                                  for x in jax.tree.leaves(scan(a, b, r)))
                            t_bwd = timed(jax.jit(jax.grad(loss, argnums=(0, 1))), *inputs, reps=args.reps)
                    except Exception as err:  # noqa: BLE001 - e.g. out of memory: a row that says so
                        print(f"# {method} {dtype_name} T={steps} {size}: {err}"[:300], file=sys.stderr)
                        print(f"{head} failed (out of memory?) | | | |", flush=True)
                        continue
                    gbs = moved / t_fwd / 1e9
                    print(f"{head} {t_fwd * 1e3:.3f} | {gbs:.1f} | {100 * gbs / copy:.0f}% | "
                          f"{'-' if np.isnan(t_bwd) else f'{t_bwd * 1e3:.3f}'} |", flush=True)
                del a, b, resets


if __name__ == "__main__":
    main()

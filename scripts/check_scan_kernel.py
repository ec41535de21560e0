"""Exactness of the fused Pallas scan: values and gradients against the sequential reference, float32.

    python scripts/check_scan_kernel.py            # GPU: compiled Triton kernel, T up to 4096
                                                    # CPU: Pallas interpret mode, small states
    python scripts/check_scan_kernel.py --tol 1e-6 --seed 3

Every case draws random a, b, resets (and h0) and a random cotangent for h, then compares the kernel's h and
its VJP (gradients w.r.t. a, b, h0) with `reset_scan(method="sequential")` and `jax.vjp` of it. Error is
max |kernel - reference| / max |reference|. Prints a markdown table; exits 1 if any error exceeds `--tol` or
any case raises (the exception is printed in the row and in full on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import traceback

import jax
import jax.numpy as jnp

from ssmrl.ssm.kernels import kernel_compiles, on_gpu, pallas_reset_scan
from ssmrl.ssm.scan import auto_method, reset_scan

TOL = 1e-5


@dataclasses.dataclass(frozen=True)
class Case:
    """One random problem: b `[T, B, P]`; a "full" `[T, B, P]`, "state" `[P]` or "time" `[T, 1, P]`; resets
    `[T, B]` (reset_dims=1) or `[T, B, P]` (2) with probability `reset_rate`; h0 `[B, P]` or none; `layout`
    the kernel's (block_size, unroll) or None for its defaults (through `reset_scan(method="pallas")`)."""

    steps: int
    batch: int
    state: int
    complex_: bool
    a_shape: str = "full"
    reset_rate: float = 0.1
    reset_dims: int = 1
    h0: bool = True
    layout: tuple[int, int] | None = None


def make_inputs(case: Case, seed: int):
    """(a, b, resets, h0 or None, cotangent of h) as jax arrays, drawn on the device; |a| in [0.3, 1)."""
    shape = (case.steps, case.batch, case.state)
    a_shape = {"full": shape, "state": (case.state,), "time": (case.steps, 1, case.state)}[case.a_shape]
    keys = iter(jax.random.split(jax.random.key(seed), 9))
    a = jax.random.uniform(next(keys), a_shape, minval=0.3, maxval=1.0)
    b, h0, ct = (jax.random.normal(next(keys), x) for x in (shape, shape[1:], shape))
    if case.complex_:
        a = a * jnp.exp(1j * jax.random.uniform(next(keys), a_shape, minval=-jnp.pi, maxval=jnp.pi))
        b, h0, ct = (x + 1j * jax.random.normal(next(keys), x.shape) for x in (b, h0, ct))
    resets = jax.random.bernoulli(next(keys), case.reset_rate, shape[: 1 + case.reset_dims])
    return a, b, resets, h0 if case.h0 else None, ct


@functools.cache
def vjp_fn(layout: tuple[int, int] | None, reference: bool):
    """Jitted (a, b, resets, h0, ct) -> (h, da, db, dh0) of the reference or of the kernel with `layout`."""
    if reference:
        scan = functools.partial(reset_scan, method="sequential")
    elif layout is None:
        scan = functools.partial(reset_scan, method="pallas")
    else:
        scan = functools.partial(pallas_reset_scan, block_size=layout[0], unroll=layout[1])

    def run(a, b, resets, h0, ct):
        h, pullback = jax.vjp(lambda a, b, h0: scan(a, b, resets, h0), a, b, h0)
        return (h, *pullback(ct))

    return jax.jit(run)


def rel_err(x, y) -> float:
    """max |x - y| / max |y|, computed on the device."""
    return float(jnp.max(jnp.abs(x - y)) / jnp.maximum(jnp.max(jnp.abs(y)), 1e-30))


def check_case(case: Case, seed: int = 0) -> dict[str, float]:
    """Relative errors of h, da, db and dh0 (dh0 only with an h0) of the kernel against the reference."""
    a, b, resets, h0, ct = make_inputs(case, seed)
    got = vjp_fn(case.layout, False)(a, b, resets, h0, ct)
    want = vjp_fn(None, True)(a, b, resets, h0, ct)
    names = ("h", "da", "db", "dh0") if case.h0 else ("h", "da", "db")
    return {name: rel_err(g, w) for name, g, w in zip(names, got, want, strict=False)}


def cases(gpu: bool) -> list[Case]:
    """GPU: T up to 4096 and states up to 64 x 1024; CPU (interpret mode): the same variety on small states."""
    if gpu:
        sizes = [(1, 1, 1), (7, 3, 5), (130, 4, 256), (1000, 16, 1000), (4096, 8, 1024), (4096, 64, 1024)]
        layouts = [(128, 1), (1024, 8), (32, 3)]
        mid = (1000, 16, 1000)
    else:
        sizes = [(1, 1, 1), (7, 3, 5), (130, 2, 48), (4096, 1, 8)]
        layouts = [(8, 3), (16, 1)]
        mid = (130, 2, 48)
    out = []
    for complex_ in (False, True):
        for i, (steps, batch, state) in enumerate(sizes):
            rate = (0.0, 0.01, 0.1, 0.5)[i % 4]
            for h0 in (True, False):
                out.append(Case(steps, batch, state, complex_, reset_rate=rate, h0=h0))
        steps, batch, state = mid
        out.append(Case(steps, batch, state, complex_, a_shape="state", reset_rate=0.05))
        out.append(Case(steps, batch, state, complex_, a_shape="time", reset_rate=0.05, reset_dims=2))
        out.extend(Case(steps, batch, state, complex_, reset_rate=0.05, layout=layout) for layout in layouts)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tol", type=float, default=TOL, help="largest accepted relative error")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    gpu = on_gpu()
    device = jax.devices()[0]
    mode = "compiled (Triton)" if gpu else "interpret mode"
    print(f"\n# fused Pallas scan vs sequential reference: {device.platform} ({device.device_kind}), "
          f"jax {jax.__version__}, kernel {mode}, tolerance {args.tol:g}")
    if gpu:
        print(f"# kernel compiles: {kernel_compiles()}; reset_scan(method='auto') uses {auto_method()!r}")
    print("\n| dtype | T | B | P | a | resets | h0 | layout | h | da | db | dh0 | ok |")
    print("|---|---:|---:|---:|---|---|---|---|---:|---:|---:|---:|---|")
    failures = 0
    for i, case in enumerate(cases(gpu)):
        dtype = "complex64" if case.complex_ else "float32"
        resets = f"{case.reset_rate:g} {'[T,B,P]' if case.reset_dims == 2 else '[T,B]'}"
        layout = "default" if case.layout is None else f"block {case.layout[0]}, unroll {case.layout[1]}"
        head = (f"| {dtype} | {case.steps} | {case.batch} | {case.state} | {case.a_shape} | {resets} | "
                f"{'yes' if case.h0 else 'no'} | {layout} |")
        try:
            errors = check_case(case, args.seed + i)
        except Exception as err:  # noqa: BLE001 - a kernel failure is a row of the table and a non-zero exit
            failures += 1
            traceback.print_exc()
            print(f"{head} {type(err).__name__}: {str(err).splitlines()[0][:200]} | | | | FAIL |", flush=True)
            continue
        ok = all(e < args.tol for e in errors.values())
        failures += not ok
        cells = " | ".join(f"{errors[k]:.1e}" if k in errors else "-" for k in ("h", "da", "db", "dh0"))
        print(f"{head} {cells} | {'ok' if ok else 'FAIL'} |", flush=True)
    print(f"\n{failures} failing case(s)" if failures else "\nall cases within tolerance")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

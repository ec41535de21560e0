"""Where a jitted program spends its device time: trace one call, then sum the device kernels by name and by the jax
operation they came from (the benchmark scripts' `--profile DIR`).

    table = profile_call(fn, args, "runs/profile", per_call=100)   # ms per iteration when one call is 100 iterations
    print(format_table(table, top=25))

Kernels inside CUDA command buffers are reported under their own (fusion) names; each is mapped to the `op_name`
metadata of the HLO instruction of that name in the compiled program (e.g. `.../imagine_step/.../in_proj/dot_general`),
so the table says which line of the model a kernel belongs to. Library kernels (cuBLAS, cuDNN) have no instruction of
their name and show the instruction that launched them when the trace records it.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import gzip
import json
import os
import re

import jax

NOISE = ("jit(", "vmap(", "jvp(", "transpose(", "while", "body", "cond", "pjit", "checkpoint", "remat", "closed_call",
         "eval_jaxpr")
"""Path components of an op_name that say how it was traced, not which model part it is."""


@dataclasses.dataclass(frozen=True)
class KernelRow:
    """One kernel name: device ms per iteration, launches per iteration, and the jax operation it came from."""

    name: str
    ms: float
    launches: float
    op: str


def hlo_op_names(hlo_text: str) -> dict[str, str]:
    """Instruction name (dots as underscores, as kernels are named) -> its op_name metadata, from compiled HLO text."""
    names = {}
    for line in hlo_text.splitlines():
        match = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name=\"([^\"]*)\"", line)
        if match:
            names.setdefault(match.group(1).replace(".", "_"), match.group(2))
    return names


def short_op(op_name: str) -> str:
    """An op_name without its tracing components (`jit(update)/vmap()/while/body/Model.step/Dense_0/dot_general` ->
    `Model.step/Dense_0/dot_general`)."""
    return "/".join(part for part in op_name.split("/") if part and not part.startswith(NOISE))


def device_events(trace_dir: str) -> list[dict]:
    """Complete events ("X") of the device processes in the newest perfetto trace under `trace_dir`; on a CPU backend
    (no device process), the host events of XLA's operations (those naming an `hlo_op`)."""
    files = sorted(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True), key=os.path.getmtime)
    if not files:
        raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir!r}: was it written by jax.profiler.trace?")
    with gzip.open(files[-1]) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    devices = {e["pid"] for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
               and "/device:" in e.get("args", {}).get("name", "")}
    if devices:
        return [e for e in events if e.get("ph") == "X" and e.get("pid") in devices]
    return [e for e in events if e.get("ph") == "X" and "hlo_op" in e.get("args", {})]


def kernel_table(events: list[dict], op_names: dict[str, str], per_call: int) -> list[KernelRow]:
    """Device events summed by kernel name, in ms and launches per iteration (`per_call` iterations traced), longest
    first."""
    ms, launches, ops = collections.Counter(), collections.Counter(), {}
    for event in events:
        name = event["name"]
        ms[name] += event.get("dur", 0.0) / 1e3 / per_call
        launches[name] += 1 / per_call
        if name not in ops:
            launcher = event.get("args", {}).get("hlo_op", "").replace(".", "_")
            ops[name] = short_op(op_names.get(name) or op_names.get(launcher, ""))
    return [KernelRow(name, total, launches[name], ops[name]) for name, total in ms.most_common()]


def profile_call(fn, args, trace_dir: str, per_call: int = 1) -> list[KernelRow]:
    """Compile the jitted `fn` for `args` once, run it once, then trace one more call into `trace_dir` and return its
    kernel table, named from that same executable's HLO; `per_call`: iterations one call runs (the table is per
    iteration)."""
    compiled = fn.lower(*args).compile()
    op_names = hlo_op_names(compiled.as_text())
    jax.block_until_ready(compiled(*args))
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        jax.block_until_ready(compiled(*args))
    return kernel_table(device_events(trace_dir), op_names, per_call)


def format_table(rows: list[KernelRow], top: int = 25) -> str:
    """Markdown: the device total, then the `top` kernels with their ms, launches and jax operation."""
    total = sum(row.ms for row in rows)
    lines = [f"device time: {total:.2f} ms per iteration over {len(rows)} kernel names (streams summed)", "",
             "| kernel | ms | launches | jax operation |", "|---|---:|---:|---|"]
    lines += [f"| {row.name[:60]} | {row.ms:.3f} | {row.launches:.1f} | {row.op[:120]} |" for row in rows[:top]]
    return "\n".join(lines)

"""Fused resettable linear scan h_t = a_t * (1 - reset_t) * h_{t-1} + b_t as a Pallas (Triton) GPU kernel.

What is fused. One kernel reads a_t, b_t (and the reset flags) once and writes h_t once: every program owns a
block of `block` consecutive elements of the flattened state axes `[N] = [B * P]`, keeps its part of h in
registers and loops over time. Resets are applied inside the kernel as selects (a_t <- 0 and h_{t-1} <- 0 where
reset_t, so that a non-finite state never crosses a reset), the initial
state h0 is loaded as the register value before step 0, and a decay that is constant in time (`[P]`, `[1, B, P]`)
is loaded once per program instead of being broadcast over T. `unroll` steps are loaded before they are used,
so that many loads are in flight per thread while the recurrence itself stays sequential.

Planar complex. Triton has no complex type, so a complex recurrence runs on separate real and imaginary float32
planes. `pallas_reset_scan_planes` takes and returns the planes themselves: a caller that keeps its complex
state as planes end to end (S5, LRU) moves exactly the bytes of the fused minimum. `pallas_reset_scan` takes
complex arrays and splits and merges them in XLA passes around the kernel (more bytes, same result).

Backward recurrence (a `jax.custom_vjp` on the planes, also one fused kernel, running backwards in time). With
ā_t = a_t (1 - reset_t), the incoming cotangent dh_t (for planes, g = g_re + i g_im is the gradient of a real
loss with respect to h: d/dh_re + i d/dh_im) and conj the complex conjugate (the identity for real planes),

    g_t = dh_t + conj(ā_{t+1}) g_{t+1}        (g_{T-1} = dh_{T-1})
    db_t = g_t,   da_t = (1 - reset_t) g_t conj(h_{t-1}),   dh0 = conj(ā_0) g_0          (h_{-1} = h0)

where a time-constant decay gets da = sum_t da_t, accumulated in registers. The kernel reads a, h (the forward
output, saved as residual), dh and the resets once, and writes da and db once. Through the complex entry point
JAX's own rules for real, imag and complex turn these planar gradients into its complex cotangents.

Backends. On a GPU the kernel is compiled by the Pallas Triton backend (selected explicitly through
`plt.CompilerParams`, since newer jax defaults Pallas to Mosaic GPU); elsewhere it runs in Pallas interpret
mode, which is correct but slow and only meant for tests. Dtypes: float32 and complex64 (`SUPPORTED_DTYPES`),
float32 planes; `ssmrl.ssm.scan.reset_scan(method="pallas")` falls back to the XLA scan for other dtypes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

try:  # the Triton backend of Pallas: deprecated in jax 0.11, may be absent in later versions
    from jax.experimental.pallas import triton as plt
except ImportError:  # pragma: no cover - depends on the installed jax
    plt = None

SUPPORTED_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.complex64))
GPU_BACKENDS = ("gpu", "cuda", "rocm")
MAX_BLOCK = 512  # elements of the state axis per program (4 warps x 4 float32 each)
TARGET_PROGRAMS = 256  # smaller blocks when N is small, so that every SM gets programs
MAX_UNROLL = 16


@dataclasses.dataclass(frozen=True)
class KernelConfig:
    """Static layout of one call (hashable: a `nondiff_argnums` of the custom VJP).

    steps: T. block: state elements per program (a power of 2). unroll: time steps loaded per loop iteration.
    num_warps: Triton warps per program. parts: 1 (real) or 2 (complex as real, imag planes). a_full: a is
    `[T, N]` (else `[N]`, constant in time). lead: L, the width of the resets `[T, L]` (0: no resets).
    group: N // L, consecutive state elements that share one reset flag. interpret: Pallas interpret mode.
    """

    steps: int
    block: int
    unroll: int
    num_warps: int
    parts: int
    a_full: bool
    lead: int
    group: int
    interpret: bool


def on_gpu() -> bool:
    return jax.default_backend() in GPU_BACKENDS


def _next_pow2(n: int) -> int:
    return 1 << max(0, n - 1).bit_length()


def choose_layout(n: int, block_size=None, unroll=None, num_warps=None, interpret: bool = False):
    """(block, unroll, num_warps) for N state elements: explicit values are validated, None ones chosen.

    Large N gets 512-element blocks of 4 warps (4 float32 a thread) and 4 steps a loop iteration; small N gets
    smaller blocks (at least `TARGET_PROGRAMS` programs, to spread over the SMs) and more unrolling (more loads
    in flight hide the memory latency that the sequential loop over T exposes). Interpret mode does not unroll
    by default (it only costs compile time there).
    """
    if block_size is None:
        block_size = min(MAX_BLOCK, _next_pow2(n))
        while block_size > 32 and -(-n // block_size) < TARGET_PROGRAMS:
            block_size //= 2
    if block_size < 1 or block_size & (block_size - 1):
        raise ValueError(f"pallas scan: block_size must be a power of 2, got {block_size}")
    if unroll is None:
        unroll = 1 if interpret else min(MAX_UNROLL, max(4, _next_pow2(2**18 // max(n, 1))))
    if unroll < 1:
        raise ValueError(f"pallas scan: unroll must be >= 1, got {unroll}")
    if num_warps is None:
        num_warps = min(8, max(1, block_size // 128))
    if num_warps not in (1, 2, 4, 8, 16):
        raise ValueError(f"pallas scan: num_warps must be one of (1, 2, 4, 8, 16), got {num_warps}")
    return block_size, unroll, num_warps


# --- complex arithmetic on (real,) or (real, imag) planes ----------------------------------------------------


def _mul(x, y):
    if len(x) == 1:
        return (x[0] * y[0],)
    (xr, xi), (yr, yi) = x, y
    return (xr * yr - xi * yi, xr * yi + xi * yr)


def _mul_conj(x, y):
    """x * conj(y)."""
    if len(x) == 1:
        return (x[0] * y[0],)
    (xr, xi), (yr, yi) = x, y
    return (xr * yr + xi * yi, xi * yr - xr * yi)


def _add(x, y):
    return tuple(u + v for u, v in zip(x, y, strict=True))


def _zero_where(x, reset):
    return x if reset is None else tuple(jnp.where(reset, jnp.zeros_like(p), p) for p in x)


def to_planes(x):
    """(x,) for a real array, (real, imag) for a complex one."""
    x = jnp.asarray(x)
    return (jnp.real(x), jnp.imag(x)) if jnp.iscomplexobj(x) else (x,)


def from_planes(planes):
    """The array whose planes these are: planes[0], or real + i imag."""
    return planes[0] if len(planes) == 1 else jax.lax.complex(*planes)


# --- kernel building blocks ----------------------------------------------------------------------------------


def _row(refs, t):
    return tuple(ref[t] for ref in refs)


def _store_row(refs, t, values):
    for ref, value in zip(refs, values, strict=True):
        ref[t] = value


def _whole(refs):
    return tuple(ref[...] for ref in refs)


def _store_whole(refs, values):
    for ref, value in zip(refs, values, strict=True):
        ref[...] = value


def _reset_reader(cfg: KernelConfig, r_ref):
    """t -> bool `[block]` reset flags of this program's elements (gathered from resets `[T, L]`), or None."""
    if r_ref is None:
        return lambda t: None
    first = pl.program_id(0) * cfg.block
    if cfg.group % cfg.block == 0:  # the whole block shares one flag: a scalar load
        return lambda t: r_ref[t, jax.lax.div(first, cfg.group)] != 0
    lead_index = jnp.minimum(jax.lax.div(first + jnp.arange(cfg.block), cfg.group), cfg.lead - 1)  # pad -> last
    return lambda t: r_ref[t, lead_index] != 0


def _time_loop(load, update, carry, start: int, count: int, unroll: int, reverse: bool):
    """carry = update(carry, t, load(t)) for t in [start, start + count), descending if `reverse`.

    Steps go `unroll` at a time: the loads of a group are issued before its updates (the updates store, and
    the compiler may not move a load above a store it cannot prove disjoint), then a remainder loop of single
    steps. Reverse order runs the remainder first (it holds the last steps).
    """

    def run(carry, first, size, n, sign):
        if n == 0:
            return carry

        def body(i, carry):
            base = first + sign * i * size
            times = [base + sign * k for k in range(size)]
            loaded = [load(t) for t in times]
            for t, values in zip(times, loaded, strict=True):
                carry = update(carry, t, values)
            return carry

        return jax.lax.fori_loop(0, n, body, carry)

    n_groups, rest = divmod(count, unroll)
    if not reverse:
        carry = run(carry, start, unroll, n_groups, 1)
        return run(carry, start + n_groups * unroll, 1, rest, 1)
    last = start + count - 1
    carry = run(carry, last, 1, rest, -1)
    return run(carry, last - rest, unroll, n_groups, -1)


def _unpack(cfg: KernelConfig, refs, names):
    """Split the flat ref list into named groups: planes for arrays, a single ref (or None) for resets."""
    out, i = {}, 0
    for name in names:
        if name == "resets":
            out[name], i = (refs[i], i + 1) if cfg.lead else (None, i)
        else:
            out[name], i = tuple(refs[i : i + cfg.parts]), i + cfg.parts
    assert i == len(refs), (i, len(refs))
    return out


FORWARD_REFS = ("a", "b", "resets", "h0", "h")
BACKWARD_REFS = ("a", "resets", "h0", "h", "dh", "da", "db", "dh0")


def _forward_kernel(cfg: KernelConfig, *refs):
    r = _unpack(cfg, refs, FORWARD_REFS)
    reset = _reset_reader(cfg, r["resets"])
    a_const = None if cfg.a_full else _whole(r["a"])

    def load(t):
        a = _row(r["a"], t) if cfg.a_full else a_const
        flags = reset(t)
        return _zero_where(a, flags), flags, _row(r["b"], t)

    def update(h, t, loaded):
        a, flags, b = loaded
        h = _add(_mul(a, _zero_where(h, flags)), b)  # a select, not a product: no NaN crosses a reset
        _store_row(r["h"], t, h)
        return h

    _time_loop(load, update, _whole(r["h0"]), 0, cfg.steps, cfg.unroll, reverse=False)


def _backward_kernel(cfg: KernelConfig, *refs):
    r = _unpack(cfg, refs, BACKWARD_REFS)
    reset = _reset_reader(cfg, r["resets"])
    a_const = None if cfg.a_full else _whole(r["a"])
    h0 = _whole(r["h0"])

    def load_step(t, h_prev):
        a = _row(r["a"], t) if cfg.a_full else a_const
        flags = reset(t)
        return _zero_where(a, flags), flags, _row(r["dh"], t), h_prev

    def update(carry, t, loaded):
        decay_g, da_sum = carry  # decay_g = conj(ā_{t+1}) g_{t+1}
        a, flags, dh, h_prev = loaded
        g = _add(dh, decay_g)
        _store_row(r["db"], t, g)
        da = _zero_where(_mul_conj(g, h_prev), flags)
        if cfg.a_full:
            _store_row(r["da"], t, da)
        else:
            da_sum = _add(da_sum, da)
        return _mul_conj(g, a), da_sum

    zeros = tuple(jnp.zeros_like(p) for p in h0)
    carry = (zeros, None if cfg.a_full else zeros)
    carry = _time_loop(lambda t: load_step(t, _row(r["h"], t - 1)), update, carry, 1, cfg.steps - 1, cfg.unroll,
                       reverse=True)
    dh0, da_sum = update(carry, 0, load_step(0, h0))
    _store_whole(r["dh0"], dh0)
    if not cfg.a_full:
        _store_whole(r["da"], da_sum)


def _block_spec(cfg: KernelConfig, x):
    """`[T, N]` sequences and `[N]` states are tiled along N; resets `[T, L]` are seen whole by every program."""
    if x.dtype == jnp.int8:
        return pl.BlockSpec((cfg.steps, cfg.lead), lambda i: (0, 0))
    if x.ndim == 1:
        return pl.BlockSpec((cfg.block,), lambda i: (i,))
    return pl.BlockSpec((cfg.steps, cfg.block), lambda i: (0, i))


def _pallas(kernel, cfg: KernelConfig, inputs, outputs):
    """Run `kernel` over the grid of state blocks. inputs: arrays and planes; outputs: ShapeDtypeStructs."""
    n = outputs[0].shape[-1]
    params = None if cfg.interpret else _triton_params(cfg)
    return pl.pallas_call(
        functools.partial(kernel, cfg),
        out_shape=outputs,
        grid=(n // cfg.block,),
        in_specs=[_block_spec(cfg, x) for x in inputs],
        out_specs=[_block_spec(cfg, x) for x in outputs],
        interpret=cfg.interpret,
        compiler_params=params,
        name=kernel.__name__.strip("_"),
    )(*inputs)


def _triton_params(cfg: KernelConfig):
    if plt is None:
        raise RuntimeError(
            f"pallas scan: this jax ({jax.__version__}) has no Pallas Triton backend "
            "(jax.experimental.pallas.triton); use an XLA method of reset_scan"
        )
    return plt.CompilerParams(num_warps=cfg.num_warps)


def _like(cfg: KernelConfig, x):
    return [jax.ShapeDtypeStruct(x.shape, jnp.float32)] * cfg.parts


def _optional(resets):
    return [] if resets is None else [resets]


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _scan(cfg: KernelConfig, a, b, resets, h0):
    """Planes of h `[T, N]` from planes of a (`[T, N]` or `[N]`), b `[T, N]`, h0 `[N]`; resets int8 `[T, L]` or
    None. Planes are tuples of `cfg.parts` float32 arrays."""
    return tuple(_pallas(_forward_kernel, cfg, [*a, *b, *_optional(resets), *h0], _like(cfg, b[0])))


def _scan_fwd(cfg, a, b, resets, h0):
    h = _scan(cfg, a, b, resets, h0)
    return h, (a, resets, h0, h)


def _scan_bwd(cfg, residuals, dh):
    a, resets, h0, h = residuals
    inputs = [*a, *_optional(resets), *h0, *h, *dh]
    planes = _pallas(_backward_kernel, cfg, inputs, _like(cfg, a[0]) + _like(cfg, h[0]) + _like(cfg, h0[0]))
    p = cfg.parts
    return tuple(planes[:p]), tuple(planes[p : 2 * p]), None, tuple(planes[2 * p :])


_scan.defvjp(_scan_fwd, _scan_bwd)


def pallas_reset_scan_planes(a, b, resets=None, h0=None, *, block_size=None, unroll=None, num_warps=None,
                             interpret=None):
    """Planar form of `pallas_reset_scan`: a, b and h0 are tuples of planes, `(x,)` for a real recurrence or
    `(x_re, x_im)` for a complex one, each plane float32 with the shape rules of `ssmrl.ssm.scan.reset_scan`.

    Returns the planes of h, each of shape `b[0].shape`; differentiable (reverse mode), the gradients being
    planar (d/dx_re, d/dx_im) as for any real function of real arrays.
    """
    parts = len(b)
    if parts not in (1, 2) or len(a) != parts or (h0 is not None and len(h0) != parts):
        raise ValueError(f"pallas scan: a, b and h0 must be tuples of 1 (real) or 2 (real, imag) planes, got "
                         f"{len(a)}, {parts} and {None if h0 is None else len(h0)}")
    a, b = (tuple(jnp.asarray(x, jnp.float32) for x in planes) for planes in (a, b))
    steps, state = b[0].shape[0], b[0].shape[1:]
    n = math.prod(state)
    if steps == 0 or n == 0:
        raise ValueError(f"pallas scan: b of shape {b[0].shape} is empty")
    interpret = not on_gpu() if interpret is None else interpret
    block, unroll, num_warps = choose_layout(n, block_size, unroll, num_warps, interpret)
    padded = -(-n // block) * block

    def flat(x):  # [..., N] -> [..., N padded to whole blocks]
        x = x.reshape(x.shape[: x.ndim - len(state)] + (n,))
        return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, padded - n)]) if padded != n else x

    ndim = b[0].ndim
    a_full = a[0].ndim == ndim and a[0].shape[0] != 1  # else constant in time: one [N] vector, loaded once

    def flat_a(x):
        return flat(jnp.broadcast_to(x, b[0].shape) if a_full else jnp.broadcast_to(x[0] if x.ndim == ndim else x,
                                                                                    state))

    lead = 0
    if resets is not None:
        resets = jnp.asarray(resets).reshape(steps, -1).astype(jnp.int8)
        lead = resets.shape[1]
    h0 = (jnp.zeros(state, jnp.float32),) * parts if h0 is None else h0
    h0 = tuple(jnp.broadcast_to(jnp.asarray(x, jnp.float32), state) for x in h0)
    cfg = KernelConfig(
        steps=steps, block=block, unroll=unroll, num_warps=num_warps, parts=parts, a_full=a_full, lead=lead,
        group=n // lead if lead else 1, interpret=interpret,
    )
    h = _scan(cfg, tuple(map(flat_a, a)), tuple(map(flat, b)), resets, tuple(map(flat, h0)))
    return tuple(x[:, :n].reshape(b[0].shape) for x in h)


def pallas_reset_scan(a, b, resets=None, h0=None, *, block_size=None, unroll=None, num_warps=None, interpret=None):
    """All states of h_t = a_t * (1 - reset_t) * h_{t-1} + b_t through the fused kernel; differentiable.

    Inputs follow `ssmrl.ssm.scan.reset_scan`'s rules, which are not re-checked here (call `reset_scan(...,
    method="pallas")` for checked inputs): b `[T, ...]`; a broadcastable to b; resets bool `[T, *lead]`, a prefix
    of b's shape; h0 broadcastable to `b.shape[1:]`. The result dtype must be float32 or complex64; complex
    arrays are split into planes and merged again around `pallas_reset_scan_planes`.

    Args:
      block_size, unroll, num_warps: kernel layout (power-of-2 block of state elements per program, time steps
        loaded per loop iteration, Triton warps); None picks them from the state size (`choose_layout`).
      interpret: run in Pallas interpret mode; None means "unless the default backend is a GPU".
    Returns:
      h of shape `b.shape`.
    """
    dtype = jnp.result_type(a, b)
    if dtype not in SUPPORTED_DTYPES:
        supported = ", ".join(str(d) for d in SUPPORTED_DTYPES)
        raise ValueError(f"pallas scan: dtype {dtype} is not supported; supported: {supported}")
    split = lambda x: to_planes(jnp.asarray(x, dtype))
    h = pallas_reset_scan_planes(split(a), split(b), resets, None if h0 is None else split(h0),
                                 block_size=block_size, unroll=unroll, num_warps=num_warps, interpret=interpret)
    return from_planes(h)


@functools.cache
def kernel_compiles() -> bool:
    """Whether the kernel (forward and backward) compiles for the default backend without interpret mode.

    `reset_scan(method="auto")` asks this once before choosing the kernel on a GPU, so that a jax without a
    working Pallas Triton backend falls back to XLA with a warning instead of failing.
    """
    spec = jax.ShapeDtypeStruct((4, 2, 64), jnp.complex64)
    resets = jax.ShapeDtypeStruct((4, 2), jnp.bool_)

    def loss(a, b, r):
        return jnp.sum(jnp.abs(pallas_reset_scan(a, b, r, interpret=False)) ** 2)

    try:
        jax.jit(jax.grad(loss, argnums=(0, 1))).lower(spec, spec, resets).compile()
    except Exception as err:  # noqa: BLE001 - any lowering or compile failure means "use XLA"
        warnings.warn(f"pallas scan: the kernel does not compile here, using XLA scans instead: {err}", stacklevel=2)
        return False
    return True

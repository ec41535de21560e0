"""Resettable linear recurrence h_t = a_t * h_{t-1} + b_t, computed over time in parallel.

A reset at step t makes h_t forget h_{t-1}. Every method applies it as a select, never as a product: the decay
becomes a_t <- where(reset_t, 0, a_t) and the state it multiplies where(reset_t, 0, h_{t-1}), so that nothing
crosses a reset, not even a NaN or inf (0 * NaN is NaN), and gradients across a reset are exactly zero. The
parallel methods carry the reset flag (at the resets' shape, `[T, *lead, 1...]`) next to the folded decay. All
methods agree with the sequential reference to float rounding.

Shapes: `b` is `[T, ...]`; `a` broadcasts against `b` (a per-state decay `[P]`, `[T, 1, P]`, or full);
`resets` is `[T, *lead]` with `lead` a prefix of `b.shape[1:]` (e.g. `[T, B]` for `b` of `[T, B, P]`);
`h0` broadcasts against `b.shape[1:]`. Returns every state `h` of shape `b.shape`; `h[-1]` is the carry.

Method "pallas" is the fused GPU kernel of `ssmrl.ssm.kernels.pallas_scan` (one pass over a and b, resets and h0
applied inside, fused backward); "auto" picks it on a GPU. A single step (T = 1, the step mode of the cores) is
always the plain elementwise update, which XLA fuses with its neighbours.

`reset_scan_planes` is the same recurrence on complex numbers held as separate real and imaginary float32
planes: on the kernel the planes go in and come out as they are, with no complex array built in between.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ssmrl.ssm.kernels import (
    SUPPORTED_DTYPES,
    from_planes,
    kernel_compiles,
    on_gpu,
    pallas_reset_scan,
    pallas_reset_scan_planes,
    to_planes,
)

METHODS = ("sequential", "associative", "chunked", "associative_flag", "pallas", "auto")
DEFAULT_CHUNK = 64


def _forget(x, reset):
    """where(reset, 0, x): `x` with what precedes a reset dropped (a select: NaN does not get through); `reset`
    None means no reset."""
    return x if reset is None else jnp.where(reset, jnp.zeros((), x.dtype), x)


def _binary_op(left, right):
    """Compose two affine maps h -> a h + b (left applied first). Associative."""
    a_l, b_l = left
    a_r, b_r = right
    return a_r * a_l, a_r * b_l + b_r


def _binary_op_reset(left, right):
    """`_binary_op` on (a, b, reset) with the resets folded into a: where the right segment holds a reset, the
    left map is dropped by select (its a, b may be non-finite), so neither values nor gradients cross it."""
    a_l, b_l, r_l = left
    a_r, b_r, r_r = right
    return a_r * _forget(a_l, r_r), a_r * _forget(b_l, r_r) + b_r, jnp.logical_or(r_l, r_r)


def _binary_op_with_flag(left, right):
    """The common three-element operator that carries the reset flag instead of folding it into `a`."""
    a_l, b_l, r_l = left
    a_r, b_r, r_r = right
    keep = jnp.logical_not(r_r)
    a = a_r * jnp.where(keep, a_l, jnp.ones((), a_l.dtype))
    b = a_r * jnp.where(keep, b_l, jnp.zeros((), b_l.dtype)) + b_r
    return a, b, jnp.logical_or(r_l, r_r)


def _check(a, b, resets, h0):
    a, b = jnp.asarray(a), jnp.asarray(b)
    if b.ndim < 1:
        raise ValueError(f"reset_scan: b must have a leading time axis [T, ...], got shape {b.shape}")
    for name, x in (("a", a), ("b", b)):
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            raise TypeError(f"reset_scan: {name} must be a float or complex array, got dtype {x.dtype}")
    if jnp.issubdtype(a.dtype, jnp.complexfloating) and not jnp.issubdtype(b.dtype, jnp.complexfloating):
        raise TypeError(
            f"reset_scan: complex a ({a.dtype}) with real b ({b.dtype}); make b complex (e.g. b.astype({a.dtype}))"
        )
    if jnp.finfo(a.dtype).bits != jnp.finfo(b.dtype).bits:
        raise TypeError(f"reset_scan: a and b differ in precision: a is {a.dtype}, b is {b.dtype}")
    try:
        shape = jnp.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"reset_scan: a of shape {a.shape} does not broadcast against b of shape {b.shape}") from None
    if shape != b.shape:
        raise ValueError(f"reset_scan: a of shape {a.shape} would enlarge b of shape {b.shape}; a must broadcast to b")
    if resets is not None:
        resets = jnp.asarray(resets)
        if resets.ndim > b.ndim or resets.shape != b.shape[: resets.ndim] or resets.ndim == 0:
            raise ValueError(
                f"reset_scan: resets of shape {resets.shape} must be a prefix [T, ...] of b's shape {b.shape}"
            )
        resets = resets.reshape(resets.shape + (1,) * (b.ndim - resets.ndim)).astype(bool)
    if h0 is not None:
        h0 = jnp.asarray(h0)
        try:
            ok = jnp.broadcast_shapes(h0.shape, b.shape[1:]) == b.shape[1:]
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"reset_scan: h0 of shape {h0.shape} does not broadcast to the state shape {b.shape[1:]}")
    return a, b, resets, h0


def _fold(a, b, resets, h0):
    """Full-shape (a, b): the decay zeroed where a reset falls and h0 folded into b[0], both by select."""
    dtype = jnp.result_type(a, b)
    a = jnp.broadcast_to(a, b.shape).astype(dtype)
    b = b.astype(dtype)
    if resets is not None:
        a = _forget(a, resets)
    if h0 is not None:
        b = b.at[0].add(a[0] * _forget(h0.astype(dtype), None if resets is None else resets[0]))
    return a, b


def _sequential(a, b, resets):
    def step(h, inputs):
        a_t, b_t, r_t = inputs
        h = a_t * _forget(h, r_t) + b_t
        return h, h

    _, h = jax.lax.scan(step, jnp.zeros_like(b[0]), (a, b, resets))
    return h


def _associative(a, b, resets):
    if resets is None:
        return jax.lax.associative_scan(_binary_op, (a, b))[1]
    return jax.lax.associative_scan(_binary_op_reset, (a, b, resets))[1]


def _pad_to_chunks(a, b, resets, chunk):
    """Pad time with identity steps (a=1, b=0, no reset) to a multiple of `chunk`; returns (a, b, resets, chunk,
    n_chunks)."""
    chunk = max(1, min(chunk, b.shape[0]))
    pad = -b.shape[0] % chunk
    if pad:
        widths = [(0, pad)] + [(0, 0)] * (b.ndim - 1)
        a = jnp.pad(a, widths, constant_values=1)
        b = jnp.pad(b, widths)
        resets = None if resets is None else jnp.pad(resets, widths)
    return a, b, resets, chunk, a.shape[0] // chunk


def _chunked(a, b, resets, chunk):
    """Sequential scan inside chunks of `chunk` steps (all chunks at once), associative across chunks.

    Chosen over the reverse arrangement (associative inside, sequential across) by measurement: that one was
    up to 5x slower forward+backward on an H100 and on CPU (docs/benchmarks.md).
    """
    steps = b.shape[0]
    a, b, resets, chunk, n = _pad_to_chunks(a, b, resets, chunk)
    by_chunk = lambda x: None if x is None else jnp.swapaxes(x.reshape((n, chunk) + x.shape[1:]), 0, 1)
    a_c, b_c, r_c = by_chunk(a), by_chunk(b), by_chunk(resets)  # [C, n, ...]

    def step(carry, inputs):
        a_prod, h, seen = carry
        a_t, b_t, r_t = inputs
        a_prod, h = a_t * _forget(a_prod, r_t), a_t * _forget(h, r_t) + b_t
        seen = None if r_t is None else jnp.logical_or(seen, r_t)
        return (a_prod, h, seen), (a_prod, h, seen)

    init = (jnp.ones_like(b_c[0]), jnp.zeros_like(b_c[0]), None if r_c is None else jnp.zeros_like(r_c[0]))
    _, (a_cum, h_local, seen) = jax.lax.scan(step, init, (a_c, b_c, r_c))  # [C, n, ...], zero-state solutions
    # State entering each chunk: scan the chunk totals (affine maps) across chunks, shift by one.
    h_end = _associative(a_cum[-1], h_local[-1], None if seen is None else seen[-1])  # [n, ...]
    h_in = jnp.concatenate([jnp.zeros_like(h_end[:1]), h_end[:-1]], axis=0)
    h = h_local + a_cum * _forget(h_in[None], seen)
    h = jnp.swapaxes(h, 0, 1).reshape((n * chunk,) + b.shape[1:])
    return h[:steps]


def _associative_flag(a, b, resets, h0):
    dtype = jnp.result_type(a, b)
    a = jnp.broadcast_to(a, b.shape).astype(dtype)
    b = b.astype(dtype)
    if h0 is not None:
        keep0 = jnp.ones((), bool) if resets is None else jnp.logical_not(resets[0])
        b = b.at[0].add(a[0] * jnp.where(keep0, h0.astype(dtype), jnp.zeros((), dtype)))
    flags = jnp.zeros(b.shape, bool) if resets is None else jnp.broadcast_to(resets, b.shape)
    return jax.lax.associative_scan(_binary_op_with_flag, (a, b, flags))[1]


def xla_method() -> str:
    """The fastest XLA method for the default backend (measured; see docs/benchmarks.md).

    CPU: one sequential pass. GPU: the associative scan (the sequential one pays a kernel launch per step).
    """
    return "sequential" if jax.default_backend() == "cpu" else "associative"


def auto_method() -> str:
    """"pallas" on a GPU where the fused kernel compiles, else `xla_method()`.

    On an H100 the kernel matches the sequential reference (`scripts/check_scan_kernel.py`) and runs the forward
    scan 2.7x (float32) and 1.4x (complex64) faster than the associative scan (docs/benchmarks.md). Its custom
    VJP is reverse mode only: for forward-mode AD (`jax.jvp`, `jax.jacfwd`) pass `method="associative"`.
    """
    if on_gpu() and kernel_compiles():
        return "pallas"
    return xla_method()


def reset_scan(a, b, resets=None, h0=None, method: str = "auto", chunk_size: int = DEFAULT_CHUNK):
    """All states of h_t = a_t * (1 - reset_t) * h_{t-1} + b_t, with h_{-1} = h0 (zeros when None).

    The reset is a select (see the module docstring): a non-finite h0, or a non-finite a, b or h before a reset,
    never reaches h after it, and h after a reset has exactly zero gradient with respect to everything before it.

    Args:
      a: decay, broadcastable to `b` (e.g. `[P]`, `[T, B, 1]` or `[T, B, P]`); real or complex.
      b: input `[T, ...]`.
      resets: optional bool `[T, *lead]`, a prefix of `b`'s shape; True at t means h_t ignores h_{t-1}.
      h0: optional carry from the previous call, broadcastable to `b.shape[1:]`.
      method: one of `METHODS`; "auto" picks the fastest for the backend. "pallas" runs the fused kernel (in
        Pallas interpret mode off GPU: slow, for tests) for float32/complex64 and non-empty b, and falls back to
        `xla_method()` otherwise. Its gradients come from a custom VJP: reverse mode only, no `jax.jvp`.
      chunk_size: chunk length C for method "chunked".
    Returns:
      `h` of shape `b.shape`, dtype `result_type(a, b)`.
    """
    if method not in METHODS:
        raise ValueError(f"reset_scan: unknown method {method!r}; choose one of {METHODS}")
    if chunk_size < 1:
        raise ValueError(f"reset_scan: chunk_size must be >= 1, got {chunk_size}")
    a, b, resets, h0 = _check(a, b, resets, h0)
    with jax.named_scope("reset_scan"):  # names the scan in profiles
        if b.shape[0] == 1:  # one step: no scan to run
            a, b = _fold(a, b, resets, h0)
            return b
        if method == "auto":
            method = auto_method()
        if method == "pallas":
            if jnp.result_type(a, b) in SUPPORTED_DTYPES and b.size:
                return pallas_reset_scan(a, b, resets, h0)
            method = xla_method()
        if method == "associative_flag":
            return _associative_flag(a, b, resets, h0)
        a, b = _fold(a, b, resets, h0)
        if method == "sequential":
            return _sequential(a, b, resets)
        if method == "associative":
            return _associative(a, b, resets)
        return _chunked(a, b, resets, chunk_size)


def _planes(x, name: str):
    """A tuple of 1 (real) or 2 (real, imag) real arrays."""
    planes = tuple(x) if isinstance(x, (tuple, list)) else None
    if planes is None or len(planes) not in (1, 2):
        raise TypeError(f"reset_scan_planes: {name} must be a tuple (real,) or (real, imag) of arrays, got {type(x)}")
    planes = tuple(jnp.asarray(p) for p in planes)
    for p in planes:
        if not jnp.issubdtype(p.dtype, jnp.floating):
            raise TypeError(f"reset_scan_planes: the planes of {name} must be real floats, got {p.dtype}")
    if len(planes) == 2 and planes[0].shape != planes[1].shape:
        raise ValueError(f"reset_scan_planes: the planes of {name} differ in shape: {[p.shape for p in planes]}")
    if len(planes) == 2 and any(p.dtype not in (jnp.float32, jnp.float64) for p in planes):
        raise TypeError(f"reset_scan_planes: complex planes of {name} must be float32 or float64, got "
                        f"{[str(p.dtype) for p in planes]}")
    return planes


def reset_scan_planes(a, b, resets=None, h0=None, method: str = "auto", chunk_size: int = DEFAULT_CHUNK):
    """`reset_scan` on planes: a, b (and h0) are `(x,)` for a real recurrence or `(x_re, x_im)` for a complex
    one, with the shapes of `reset_scan`'s arguments. Returns the planes of h, each of shape `b[0].shape`.

    With the kernel (method "pallas", or "auto" on a GPU) and float32 planes, the planes go through the kernel as
    they are; otherwise they are merged into a complex array for `reset_scan` and split again.
    """
    a, b = _planes(a, "a"), _planes(b, "b")
    h0 = None if h0 is None else _planes(h0, "h0")
    if not len(a) == len(b) == (len(b) if h0 is None else len(h0)):
        raise ValueError(f"reset_scan_planes: a, b and h0 must all be real (1 plane) or all complex (2 planes), got "
                         f"{len(a)}, {len(b)} and {None if h0 is None else len(h0)} planes")
    if method not in METHODS:
        raise ValueError(f"reset_scan_planes: unknown method {method!r}; choose one of {METHODS}")
    if method == "auto":
        method = auto_method()
    dtype = jnp.result_type(*a, *b)
    if method == "pallas" and dtype == jnp.float32 and b[0].size and b[0].shape[0] > 1:
        _, _, resets, _ = _check(a[0], b[0], resets, None if h0 is None else h0[0])
        with jax.named_scope("reset_scan"):
            return pallas_reset_scan_planes(a, b, resets, h0)
    h = reset_scan(from_planes(a), from_planes(b), resets, None if h0 is None else from_planes(h0),
                   method=method, chunk_size=chunk_size)
    return to_planes(h)

"""S4D: diagonal state spaces (Gu, Gupta, Goel, Re, NeurIPS 2022), resettable.

H independent SISO SSMs, one per channel, each with a diagonal A = diag(Lambda) `[N']` (N' = N/2 modes; the
other half are their conjugates, so y = 2 Re(C x) + D u), B and C `[N']` complex, a learnable log time step
and D. Initialisations of Lambda (n = 0..N'-1):

- "inv" (S4D-Inv):   -1/2 + i (N/pi) (N/(2n+1) - 1)
- "lin" (S4D-Lin):   -1/2 + i pi n
- "real" (S4D-Real): -(n+1)
- "legs" (S4D-LegS): the eigenvalues of HiPPO-N, the diagonal part of S4's DPLR matrix,

with B = 1 (for "legs", B = V^* B_LegS as in S4) and C complex normal with E|C|^2 = 1. ZOH or bilinear
discretisation. Convolution mode (no reset after step 0) uses the Vandermonde kernel
K_j = 2 Re(sum_n C_n B_bar_n Lambda_bar_n^j) and an FFT; the final state and a nonzero carry's response are
Vandermonde products too. Recurrent mode is a diagonal `reset_scan`.

Deviations: Re Lambda is stored as log(-Re Lambda) (the reference code's "exp" transform; keeps A stable);
the block uses LayerNorm, not BatchNorm, so no statistics cross episode boundaries.
"""

from __future__ import annotations

import functools

import chex
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from ssmrl.ssm.s4 import s4_nplr_init
from ssmrl.ssm.s5 import DISCRETIZATIONS, choice, discretize
from ssmrl.ssm.scan import METHODS, reset_scan
from ssmrl.ssm.siso import SISOSSM, SISOCore, as_complex, causal_conv, check_state_size, output

S4D_INITS = ("inv", "lin", "real", "legs")


def s4d_init(state_size: int, init: str) -> tuple[np.ndarray, np.ndarray]:
    """Lambda and B `[N/2]` (complex128) of the S4D initialisation `init` for state size N."""
    choice(init, S4D_INITS, "S4D init")
    check_state_size(state_size, "S4D")
    modes = np.arange(state_size // 2)
    ones = np.ones(state_size // 2, np.complex128)
    if init == "inv":
        return -0.5 + 1j * (state_size / np.pi) * (state_size / (2 * modes + 1) - 1), ones
    if init == "lin":
        return -0.5 + 1j * np.pi * modes, ones
    if init == "real":
        return -(modes + 1.0) + 0j, ones
    lam, _, b, _ = s4_nplr_init(state_size)
    return lam, b


@chex.dataclass(frozen=True)
class DiagonalSystem:
    """Discretised S4D SSMs, all `[H, N']` complex: x_t = lam x_{t-1} + b u_t, y = 2 Re(c x)."""

    lam: chex.Array
    b: chex.Array
    c: chex.Array


def discretize_diagonal(lam, b, c, step, method: str) -> DiagonalSystem:
    """ZOH or bilinear discretisation: lam, b, c `[H, N']`, step `[H]`."""
    shape = lam.shape
    step = jnp.broadcast_to(step[:, None], shape).reshape(-1)
    lam_bar, b_bar = discretize(lam.reshape(-1), b.reshape(-1, 1), step, method)
    return DiagonalSystem(lam=lam_bar.reshape(shape), b=b_bar.reshape(shape), c=c)


def diagonal_recurrence(system: DiagonalSystem, u, resets, h0, method: str = "auto"):
    """Recurrent mode through `reset_scan`: u `[T, *batch, H]`, resets `[T, *batch]`, h0 `[*batch, H, N']`."""
    states = reset_scan(system.lam, system.b * u[..., None], resets, h0, method=method)
    return states[-1], output(system.c, states)


# One recurrence per scan method, built once so that each is the same static argument on every call.
RECURRENCES = {method: functools.partial(diagonal_recurrence, method=method) for method in METHODS}


def diagonal_convolution(system: DiagonalSystem, u, h0):
    """Convolution mode (no resets): u `[T, *batch, H]`, h0 `[*batch, H, N']` -> (h_T, y `[T, *batch, H]`)."""
    steps = u.shape[0]
    lam = jnp.broadcast_to(system.lam[..., None], (*system.lam.shape, steps - 1))
    powers = jnp.cumprod(jnp.concatenate([jnp.ones_like(lam[..., :1]), lam], -1), axis=-1)  # lam^j [H, N', L]
    kernel = 2.0 * jnp.real(jnp.einsum("hn,hnj->hj", system.c * system.b, powers))
    y_h0 = 2.0 * jnp.real(jnp.einsum("hnt,...hn->t...h", (system.c * system.lam)[..., None] * powers, h0))
    h = system.b * jnp.einsum("t...h,hnt->...hn", u[::-1], powers) + powers[..., -1] * system.lam * h0
    return h, causal_conv(u, kernel) + y_h0


class S4DSSM(SISOSSM):
    """One S4D layer (see the module docstring): u `[T, *batch, H]` -> y, state `[*batch, H, N/2]` complex64.

    Parameters per channel: Lambda, B, C `[H, N/2]` complex, log step `[H]`, D `[H]`.
    """

    lambda_init: str = "inv"
    discretization: str = "zoh"
    scan_method: str = "auto"

    def setup(self):
        super().setup()
        choice(self.discretization, DISCRETIZATIONS, "S4D discretization")
        choice(self.scan_method, METHODS, "S4D scan_method")
        lam, b = s4d_init(self.state_size, self.lambda_init)
        self.lam = self.eigenvalues(lam)
        self.b = self.tiled_complex("B", b)

    def discrete_system(self) -> DiagonalSystem:
        return discretize_diagonal(self.lam, self.b, as_complex(self.c), jnp.exp(self.log_step), self.discretization)

    @nn.nowrap
    def modes(self):
        return diagonal_convolution, RECURRENCES[self.scan_method]


class S4DCore(SISOCore):
    """Stacked S4D (Gu, Gupta, Goel, Re 2022): see `SISOCore` for the stack and the carry, `S4DSSM` for the layer."""

    lambda_init: str = "inv"
    discretization: str = "zoh"
    scan_method: str = "auto"

    @nn.nowrap
    def layer(self) -> S4DSSM:
        return S4DSSM(
            self.d_model, self.state_size, self.dt_min, self.dt_max, self.lambda_init, self.discretization,
            self.scan_method, parent=None,
        )

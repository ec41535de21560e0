"""S4: structured state spaces with a normal-plus-low-rank state matrix (Gu, Goel, Re, ICLR 2022), resettable.

H independent SISO SSMs, one per channel, each with A = Lambda - P P^* (Lambda diagonal complex, P rank 1),
B, C `[N']`, a learnable log time step, and D. At initialisation (Lambda, P, B) are HiPPO-LegS written in the
eigenbasis V of its normal part: LegS = V (diag(Lambda) - P P^*) V^*. Only N' = N/2 modes are stored; the
other half are their conjugates (the system is real), so inner products over the full state are
<u, x> = 2 Re(sum conj(u) x) and y = 2 Re(C x) + D u.

Bilinear discretisation, as in S4. By Woodbury, A_bar = (I - dt/2 A)^-1 (I + dt/2 A) is again diagonal plus
rank one, A_bar x = d x + v <q, x>, so a recurrent step costs O(N).

Convolution mode (no reset after step 0): the kernel K_j = C A_bar^j B_bar is computed from its generating
function at the L-th roots of unity z, C (I - A_bar^L)(I - z A_bar)^-1 B_bar, where (I - z A_bar)^-1 is a
Cauchy sum over the diagonal plus a Woodbury correction for the rank-one term (O(N) per z), then an inverse
FFT; y = K * u by FFT. The paper folds (I - A_bar^L) into C tilde = C (I - A_bar^L); it commutes with the
resolvent, so it is applied to B_bar here instead, which lets the final state Sum_j A_bar^j B_bar u_{L-1-j}
reuse the same resolvents (by Parseval). A nonzero carry's response C A_bar^(t+1) h0 and A_bar^L h0 are added
in the same way. A_bar^L and I - A_bar^L = (I - A_bar) Sum_{j<L} A_bar^j come from binary doubling of the dense A_bar
(the reference implementation also squares it); the second form avoids cancellation when dt L is small.
The parameter is C itself, not C tilde, because C tilde depends on the sequence length L, which
varies from call to call in RL.

Recurrent mode (resets inside the sequence, or T = 1): x_t = (1 - r_t) A_bar x_{t-1} + B_bar u_t, stepped
with `lax.scan` in the DPLR form. It is not a diagonal `reset_scan`: the diagonal form of A_bar is
numerically useless for S4. HiPPO-LegS has real eigenvalues -1..-N whose eigenvector matrix has entries up to
~2^(4N/3) (S4 paper, Lemma 3.2), and every diagonal realisation of the SISO system shares the same residues;
for N = 64 they exceed 1e40, so the modes cancel catastrophically (float32 kernels are already off by
O(1) at N = 12). Stepping the DPLR matrix itself is S4's own recurrent view, exact and stable; the reset
is a select on the state, as in `reset_scan`, so outputs after a reset have zero gradient to inputs before it
and not even a NaN crosses it.

Deviations: Re Lambda is stored as log(-Re Lambda) (the reference code's "exp" transform; keeps A stable);
the block uses LayerNorm, not BatchNorm, so no statistics cross episode boundaries.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssmrl.ssm.hippo import hippo_legs_nplr, hippo_normal_eig
from ssmrl.ssm.siso import SISOSSM, SISOCore, as_complex, causal_conv, check_state_size, output


def s4_nplr_init(state_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """HiPPO-LegS in S4's coordinates: Lambda, P, B `[N/2]` and V `[N, N/2]` (complex128).

    With V_f = [V, conj V], Lambda_f = [Lambda, conj Lambda], P_f = [P, conj P], B_f = [B, conj B] (unitary
    V_f): A_LegS = V_f (diag(Lambda_f) - P_f P_f^*) V_f^* and B_LegS = V_f B_f.
    """
    check_state_size(state_size, "S4")
    _, p, b = hippo_legs_nplr(state_size)
    lam, v = hippo_normal_eig(state_size)
    half = state_size // 2
    v = v[:, :half]
    return lam[:half], v.conj().T @ p, v.conj().T @ b, v


def full(x):
    """Half coordinates `[..., N']` -> full conjugate-symmetric coordinates `[..., 2N']`."""
    return jnp.concatenate([x, jnp.conj(x)], axis=-1)


def real_inner(u, x):
    """<u, x> = u_f^* x_f = 2 Re(sum_n conj(u_n) x_n) over the last axis (kept, size 1)."""
    return 2.0 * jnp.real(jnp.sum(jnp.conj(u) * x, axis=-1, keepdims=True))


@chex.dataclass(frozen=True)
class DPLRSystem:
    """Discretised S4 SSMs, all `[H, N']` complex: A_bar x = d x + v <q, x>, B_bar = b, y = 2 Re(c x).

    gap = 1 - d, computed without cancellation (d is within ~dt of 1 for small time steps dt).
    """

    d: chex.Array
    gap: chex.Array
    v: chex.Array
    q: chex.Array
    b: chex.Array
    c: chex.Array

    def dense(self, diagonal, sign: float):
        """Dense diag(diagonal) + sign v q^* `[H, 2N', 2N']` in full coordinates (A_bar: d, +1; I - A_bar: gap, -1)."""
        outer = full(self.v)[:, :, None] * jnp.conj(full(self.q))[:, None, :]
        return jax.vmap(jnp.diag)(full(diagonal)) + sign * outer


def discretize_dplr(lam, p, b, c, step) -> DPLRSystem:
    """Bilinear discretisation of A = Lambda - P P^*, B: lam, p, b, c `[H, N']`, step `[H]`."""
    half = 0.5 * step[:, None]
    e = 1.0 / (1.0 - half * lam)  # (I - dt/2 Lambda)^-1
    d = e * (1.0 + half * lam)
    den = 1.0 + half * real_inner(p, e * p)  # Woodbury denominator, >= 1 since Re Lambda < 0
    v = -half * e * p / den
    q = (1.0 + jnp.conj(d)) * p
    b_bar = step[:, None] * e * (b - half * p * real_inner(p, e * b) / den)
    return DPLRSystem(d=d, gap=-2.0 * half * lam * e, v=v, q=q, b=b_bar, c=c)


def power_and_sum(a, n: int):
    """A^n and Sum_{j<n} A^j for square matrices a `[..., M, M]` and static n >= 1, by binary doubling."""
    eye = jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)
    power, total = a, eye
    for bit in bin(n)[3:]:
        power, total = power @ power, total + power @ total
        if bit == "1":
            power, total = a @ power, eye + a @ total
    return power, total


def dplr_recurrence(system: DPLRSystem, u, resets, h0):
    """Recurrent mode: u `[T, *batch, H]`, resets `[T, *batch]`, h0 `[*batch, H, N']` -> (h_T, y `[T, *batch, H]`)."""
    bu = system.b * u[..., None]

    def step(x, inputs):
        bu_t, reset_t = inputs
        x = system.d * x + system.v * real_inner(system.q, x)
        x = jnp.where(reset_t[..., None, None], jnp.zeros_like(x), x) + bu_t
        return x, x

    h, states = jax.lax.scan(step, h0, (bu, resets))
    return h, output(system.c, states)


def dplr_convolution(system: DPLRSystem, u, h0):
    """Convolution mode (no resets): u `[T, *batch, H]`, h0 `[*batch, H, N']` -> (h_T, y `[T, *batch, H]`)."""
    steps, modes = u.shape[0], system.d.shape[-1]
    a_bar = system.dense(system.d, 1.0)
    a_pow, a_sum = power_and_sum(a_bar, steps)  # A_bar^L, Sum_{j<L} A_bar^j [H, N, N]
    # I - A_bar^L = (I - A_bar) Sum_{j<L} A_bar^j: no cancellation when A_bar^L is close to I.
    a_gen = jnp.einsum("hij,hjk->hik", system.dense(system.gap, -1.0), a_sum)
    matvec = lambda m, x: jnp.einsum("hij,...hj->...hi", m, x)
    b_gen = matvec(a_gen, full(system.b))  # (I - A_bar^L) B_bar

    # Resolvent (I - z A_bar)^-1 w = r w + gain r v (q^* r w) at z = exp(-2 pi i k / L), k = 0..L/2.
    z = jnp.exp(-2j * jnp.pi * jnp.arange(steps // 2 + 1, dtype=jnp.float32) / steps)[:, None]  # [F, 1]
    r = 1.0 / (1.0 - z + z * full(system.gap)[:, None, :])  # [H, F, N] Cauchy terms 1 / (1 - z d)
    qr = jnp.conj(full(system.q))[:, None, :] * r
    rv = r * full(system.v)[:, None, :]
    gain = z / (1.0 - z * jnp.sum(qr * full(system.v)[:, None, :], -1, keepdims=True))  # [H, F, 1]
    s = r * b_gen[:, None, :] + gain * rv * jnp.sum(qr * b_gen[:, None, :], -1, keepdims=True)  # [H, F, N]
    c_f = full(system.c)[:, None, :]
    kernel = jnp.fft.irfft(jnp.sum(c_f * s, -1), n=steps, axis=-1)  # [H, L]

    # Carry: y_t += C A_bar^(t+1) h0, generating function C (I - z A_bar)^-1 (I - A_bar^L) A_bar h0.
    h0_f = full(h0)
    w = matvec(a_gen, matvec(a_bar, h0_f))  # [*batch, H, N]
    cauchy = lambda m: jnp.einsum("hfn,...hn->...hf", m, w)
    y_h0_hat = cauchy(c_f * r) + gain[..., 0] * jnp.sum(c_f * rv, -1) * cauchy(qr)
    y_h0 = jnp.moveaxis(jnp.fft.irfft(y_h0_hat, n=steps, axis=-1), -1, 0)
    y = causal_conv(u, kernel) + y_h0

    # Final state Sum_j A_bar^j B_bar u_{L-1-j} = (1/L) Sum_k z_k U_k (I - z_k A_bar)^-1 (I - A_bar^L) B_bar over all
    # L roots; the roots above L/2 are the conjugates of those below, whose full-coordinate halves swap.
    u_hat = jnp.fft.rfft(u, axis=0)  # [F, *batch, H]
    partner = jnp.ones(z.shape[0], jnp.float32).at[0].set(0.0)
    if steps % 2 == 0:
        partner = partner.at[-1].set(0.0)
    partner = partner.reshape((-1,) + (1,) * (u.ndim - 1))
    zs = z * s
    state = jnp.einsum("f...h,hfn->...hn", u_hat, zs[..., :modes])
    state = state + jnp.conj(jnp.einsum("f...h,hfn->...hn", u_hat * partner, zs[..., modes:]))
    h = state / steps + matvec(a_pow, h0_f)[..., :modes]
    return h, y


class S4SSM(SISOSSM):
    """One S4 layer (see the module docstring): u `[T, *batch, H]` -> y, state `[*batch, H, N/2]` complex64.

    Parameters per channel: Lambda, P, B, C `[H, N/2]` complex, log step `[H]`, D `[H]`.
    """

    def setup(self):
        super().setup()
        lam, p, b, _ = s4_nplr_init(self.state_size)
        self.lam = self.eigenvalues(lam)
        self.p = self.tiled_complex("P", p)
        self.b = self.tiled_complex("B", b)

    def discrete_system(self) -> DPLRSystem:
        return discretize_dplr(self.lam, self.p, self.b, as_complex(self.c), jnp.exp(self.log_step))

    @nn.nowrap
    def modes(self):
        return dplr_convolution, dplr_recurrence


class S4Core(SISOCore):
    """Stacked S4 (Gu, Goel, Re 2022): see `SISOCore` for the stack and the carry, `S4SSM` for the layer."""

    @nn.nowrap
    def layer(self) -> S4SSM:
        return S4SSM(self.d_model, self.state_size, self.dt_min, self.dt_max, parent=None)

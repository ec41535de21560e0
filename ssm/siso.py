"""What S4 and S4D share: H independent single-input single-output SSMs (one per channel), two ways to run
them, and the stacked core.

Each layer maps u `[T, *batch, H]` to y `[T, *batch, H]` with a complex state `[*batch, H, N']` (N' = N/2
modes; the other half are their complex conjugates, so y = 2 Re(C x) + D u). It runs in one of two exact modes:

- convolution mode: y = K * u by FFT, with the carry's response and the final state added in closed form;
  used when no reset falls after step 0 (a reset at step 0 only zeroes the carry);
- recurrent mode: the state recurrence step by step, zeroing the state at each reset; used when a reset falls
  inside the sequence, and for T = 1 (step mode).

The choice is made at run time with `lax.cond` (under `vmap` both run and one is selected), so it is jittable.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ssmrl.ssm.s5 import S5Block, choice
from ssmrl.ssm.stack import StackedCore

# The GLU variants end in a position-wise Dense layer, the only place where the H SISO channels mix; the
# S5 block's plain "gelu" has none, so it is not offered here.
SISO_ACTIVATIONS = ("full_glu", "half_glu1", "half_glu2")


def as_complex(x):
    """`[..., 2]` real pairs -> complex `[...]`."""
    return x[..., 0] + 1j * x[..., 1]


def as_pairs(z):
    """complex `[...]` -> `[..., 2]` float32 real pairs (how complex parameters are stored)."""
    return jnp.stack([jnp.real(z), jnp.imag(z)], -1).astype(jnp.float32)


def output(c, states):
    """y = 2 Re(sum_n c_n x_n): c `[H, N']`, states `[..., H, N']` -> `[..., H]`."""
    return 2.0 * jnp.real(jnp.sum(c * states, axis=-1))


def causal_conv(u, kernel):
    """y_t = sum_{j <= t} kernel_j u_{t-j} per channel, by zero-padded FFT: u `[T, *batch, H]`, kernel `[H, T]`."""
    steps = u.shape[0]
    u_hat = jnp.fft.rfft(u, n=2 * steps, axis=0)  # [F, *batch, H]
    k_hat = jnp.fft.rfft(kernel, n=2 * steps, axis=-1).T  # [F, H]
    k_hat = k_hat.reshape((k_hat.shape[0],) + (1,) * (u.ndim - 2) + (k_hat.shape[1],))
    return jnp.fft.irfft(u_hat * k_hat, n=2 * steps, axis=0)[:steps]


@functools.partial(jax.jit, static_argnums=(0, 1))
def conv_or_recurrence(convolution, recurrence, system, u, resets, h0):
    """(h_T, y) from `convolution(system, u, h0)` if no reset falls after step 0, else from
    `recurrence(system, u, resets, h0)`. h0 `[*batch, H, N']` is zeroed where resets[0] is True first; T = 1
    always takes the recurrence (one step). Jitted (the modes are static), so eager calls reuse the compilation.
    """
    h0 = jnp.where(resets[0][..., None, None], jnp.zeros_like(h0), h0)
    recur = lambda h: recurrence(system, u, resets, h)
    if resets.shape[0] == 1:
        return recur(h0)
    return jax.lax.cond(jnp.any(resets[1:]), recur, lambda h: convolution(system, u, h), h0)


def check_state_size(state_size: int, owner: str):
    """The full state size N must be even (conjugate pairs) and >= 2."""
    if state_size < 2 or state_size % 2:
        raise ValueError(f"{owner}: state_size must be even and >= 2 (conjugate pairs), got {state_size}")


def init_log_step(dt_min: float, dt_max: float):
    """Initializer of a log time step per channel, uniform in [log dt_min, log dt_max]."""

    def init(key, shape):
        return jax.random.uniform(key, shape, jnp.float32, minval=np.log(dt_min), maxval=np.log(dt_max))

    return init


class SISOSSM(nn.Module):
    """Base of one S4/S4D layer: u `[T, *batch, H]` -> y `[T, *batch, H]`, state `[*batch, H, N']` complex64.

    Parameters shared by both: C `[H, N']` (complex normal, E|C|^2 = 1), D `[H]`, log time step `[H]`.
    Subclasses add their state matrix in `setup` (after `super().setup()`), `discrete_system()`, and `modes()`:
    the pure functions `convolution(system, u, h0)` and `recurrence(system, u, resets, h0)`, each returning
    (h_T, y - D u) (hashable and the same on every call: they are static arguments of a jitted function).
    """

    d_model: int
    state_size: int = 64
    dt_min: float = 0.001
    dt_max: float = 0.1

    @property
    def num_modes(self) -> int:
        return self.state_size // 2

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]):
        return jnp.zeros((*batch_shape, self.d_model, self.num_modes), jnp.complex64)

    def setup(self):
        name = type(self).__name__
        check_state_size(self.state_size, name)
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"{name}: need 0 < dt_min <= dt_max, got dt_min={self.dt_min}, dt_max={self.dt_max}")
        shape = (self.d_model, self.num_modes)
        self.c = self.param("C", lambda key: jax.random.normal(key, (*shape, 2), jnp.float32) * 0.5**0.5)
        self.d = self.param("D", nn.initializers.normal(stddev=1.0), (self.d_model,), jnp.float32)
        self.log_step = self.param("log_step", init_log_step(self.dt_min, self.dt_max), (self.d_model,))

    def eigenvalues(self, lam):
        """Learnable diagonal Lambda `[H, N']` initialised to `lam` (numpy, Re < 0), tiled over channels.

        Stored as log(-Re Lambda) and Im Lambda, so Re Lambda stays negative and the SSM stays stable.
        """
        tile = lambda x: jnp.asarray(np.tile(x, (self.d_model, 1)), jnp.float32)
        log_neg_re = self.param("log_neg_lambda_re", lambda _: tile(np.log(-lam.real)))
        im = self.param("lambda_im", lambda _: tile(lam.imag))
        return -jnp.exp(log_neg_re) + 1j * im

    def tiled_complex(self, name: str, value):
        """A learnable complex `[H, N']` parameter initialised to `value` `[N']` on every channel."""
        return as_complex(self.param(name, lambda _: as_pairs(np.tile(value, (self.d_model, 1)))))

    def __call__(self, h0, u, resets):
        convolution, recurrence = self.modes()
        h, y = conv_or_recurrence(convolution, recurrence, self.discrete_system(), u, resets, h0)
        return h, y + self.d * u


class SISOCore(StackedCore):
    """Base of the stacked S4/S4D cores: x `[T, *batch, D]` -> Dense(d_model) -> n_layers blocks -> `[T, *batch,
    d_model]`. A block is norm -> SSM -> GELU + GLU -> dropout -> residual (`S5Block`). Carry: a tuple of n_layers
    complex64 states `[*batch, d_model, state_size / 2]`. Subclasses define `layer()`.
    """

    state_size: int = 64
    dt_min: float = 0.001
    dt_max: float = 0.1
    activation: str = "full_glu"
    prenorm: bool = True
    dropout: float = 0.0

    @nn.nowrap
    def block(self, index: int) -> S5Block:
        choice(self.activation, SISO_ACTIVATIONS, f"{type(self).__name__} activation")
        return S5Block(self.layer(), self.activation, self.prenorm, self.dropout, name=f"block_{index}")

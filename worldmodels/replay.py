"""An on-device replay buffer (a ring buffer inside the jitted state) with Drama's dynamic frequency-based sampling.

Layout: `capacity` rows x `num_envs` streams, time-major `[C, N, ...]`; each row holds one vectorised env step:
obs o_t, the action a_t taken from it, the reward r_t and termination of that transition, and `first` (o_t starts
an episode). Windows of `length` consecutive rows of one env stream are sampled; a window may cross episode
boundaries (the `first` flags mark them) but never the ring's write position.

Dynamic frequency-based sampling (DFS, Wang et al. 2025; the rule of the official implementation,
github.com/realwenlongwang/drama `replay_buffer.py`): every window start i keeps N_i, how many times a world-model
batch started there, and M_i, how many times an imagination context did.

  world model:   p_i = softmax_i(-N_i / tau)
  imagination:   p_i = softmax_i((N_i - alpha M~_i - beta max(0, N_i - M~_i)) / tau_img),  M~_i = M_i * B_wm / B_img

so the world model favours data it has seen least, and imagination starts from data the world model has trained
on more than imagination has used it (M~ rescales the larger imagination batches to world-model counts). Starts
are drawn without replacement (Gumbel top-k, exact for softmax probabilities); each drawn start's count grows by 1.
`dfs=False` samples uniformly (the paper's ablation).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp

FIELDS = ("obs", "action", "reward", "terminal", "first")
"""The per-step fields a sampled window holds."""


@chex.dataclass(frozen=True)
class Replay:
    """Ring buffer. obs `[C, N, *obs_shape]`; action int32, reward float32, terminal and first bool `[C, N]`;
    wm_count, img_count int32 `[C, N]` (DFS counts of window starts); pos: next row written; size: rows filled."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminal: jax.Array
    first: jax.Array
    wm_count: jax.Array
    img_count: jax.Array
    pos: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return self.action.shape[0]


def replay_init(capacity: int, num_envs: int, obs_shape: Sequence[int], obs_dtype=jnp.float32) -> Replay:
    """An empty buffer; ValueError for a non-positive capacity or env count."""
    if capacity < 1 or num_envs < 1:
        raise ValueError(f"replay needs capacity >= 1 and num_envs >= 1, got capacity={capacity}, num_envs={num_envs}")
    rows = (capacity, num_envs)
    zeros_i = jnp.zeros(rows, jnp.int32)
    return Replay(
        obs=jnp.zeros((*rows, *obs_shape), obs_dtype), action=zeros_i, reward=jnp.zeros(rows, jnp.float32),
        terminal=jnp.zeros(rows, bool), first=jnp.zeros(rows, bool), wm_count=zeros_i, img_count=zeros_i,
        pos=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32),
    )


def replay_add(replay: Replay, obs, action, reward, terminal, first) -> Replay:
    """Write one row (obs `[N, ...]`, the rest `[N]`), overwriting the oldest when full; its counts restart at 0."""
    i = replay.pos
    zero = jnp.zeros_like(replay.wm_count[0])
    return replay.replace(
        obs=replay.obs.at[i].set(obs.astype(replay.obs.dtype)), action=replay.action.at[i].set(action),
        reward=replay.reward.at[i].set(reward), terminal=replay.terminal.at[i].set(terminal),
        first=replay.first.at[i].set(first), wm_count=replay.wm_count.at[i].set(zero),
        img_count=replay.img_count.at[i].set(zero), pos=(i + 1) % replay.capacity,
        size=jnp.minimum(replay.size + 1, replay.capacity),
    )


def valid_starts(replay: Replay, length: int):
    """bool `[C, N]`: a window of `length` rows starting at this row lies in written data (not across `pos`)."""
    oldest = (replay.pos - replay.size) % replay.capacity
    age = (jnp.arange(replay.capacity) - oldest) % replay.capacity
    return jnp.broadcast_to((age <= replay.size - length)[:, None], replay.wm_count.shape)


def num_valid_starts(rows: int, num_envs: int, length: int) -> int:
    """How many window starts `rows` filled rows of `num_envs` streams hold (for checks before training)."""
    return max(rows - length + 1, 0) * num_envs


@dataclasses.dataclass(frozen=True)
class SamplingRule:
    """DFS settings (official defaults: tau = tau_img = 10, alpha = beta = 1); count_scale = B_wm / B_img turns
    imagination counts into world-model units; dfs=False: uniform over valid starts."""

    tau: float = 10.0
    imagination_tau: float = 10.0
    alpha: float = 1.0
    beta: float = 1.0
    count_scale: float = 16 / 1024
    dfs: bool = True


def dfs_logits(replay: Replay, length: int, imagination: bool, rule: SamplingRule):
    """Sampling logits `[C, N]` of window starts (-inf where invalid): DFS's rule (module docstring) or uniform."""
    n = replay.wm_count.astype(jnp.float32)
    if not rule.dfs:
        score = jnp.zeros_like(n)
    elif imagination:
        m = replay.img_count.astype(jnp.float32) * rule.count_scale
        score = (n - rule.alpha * m - rule.beta * jnp.maximum(n - m, 0.0)) / rule.imagination_tau
    else:
        score = -n / rule.tau
    return jnp.where(valid_starts(replay, length), score, -jnp.inf)


def sample_starts(key, logits, batch: int):
    """`batch` distinct flat start indices, drawn without replacement with probabilities softmax(logits)."""
    flat = logits.reshape(-1)
    return jax.lax.top_k(flat + jax.random.gumbel(key, flat.shape), batch)[1]


def sample_windows(replay: Replay, key, logits, batch: int, length: int, imagination: bool):
    """Draw `batch` windows of `length` rows with start logits `[C, N]` and count the draws.

    Returns (replay with wm_count or img_count incremented at the starts, dict of obs `[L, B, *obs_shape]`,
    action, reward, terminal, first `[L, B]`).
    """
    starts = sample_starts(key, logits, batch)
    row, env = jnp.divmod(starts, replay.wm_count.shape[1])
    rows = (row[None, :] + jnp.arange(length)[:, None]) % replay.capacity  # [L, B]
    data = {name: getattr(replay, name)[rows, env[None, :]] for name in FIELDS}
    if imagination:
        replay = replay.replace(img_count=replay.img_count.at[row, env].add(1))
    else:
        replay = replay.replace(wm_count=replay.wm_count.at[row, env].add(1))
    return replay, data

"""Decision Mamba (Lv et al. 2024, "Decision Mamba: A Multi-Grained State Space Model with Self-Evolution
Regularization for Offline RL", NeurIPS 2024), and DT with a recurrent core in place of attention.

Backbones for `ssmrl.agents.decision_transformer.DecisionModel` (tokens `[3K, B, D]` -> `[3K, B, D]`):

- `MultiGrainedMamba` (DM): n_layers residual blocks x + Coarse(RMSNorm(x)) + LN(Fine(RMSNorm(x))), then RMSNorm.
  The coarse-grained branch is a Mamba layer (`ssmrl.ssm.mamba.MambaLayer`) over the whole token sequence (inter-step);
  the fine-grained branch is a second Mamba layer with its own parameters that scans each (R_t, s_t, a_t) triplet
  on its own (its state and conv window are reset at every R_t token: intra-step). DM's embeddings (residual MLPs,
  LayerNorm before adding the timestep embedding) and MLP action head are options of `DecisionModel`.
- `CoreBackbone`: any `ssmrl.ssm.make_core` core run over the tokens from a zero carry: "mamba" gives the plain Decision
  Mamba (DT with Mamba blocks in place of the GPT blocks, Ota 2024), "s5" a Decision-S5.

DM's training objective (`ssmrl.agents.offline_train`): 0.9 * MSE(action, PSER target) + 0.05 * Huber(next state) +
0.05 * Huber(next return-to-go), the last two predicted from the action token ("inverse learning objectives").
Progressive self-evolution regularisation (PSER): training runs in iterations of `steps_per_iter` updates; during
iteration k (k = 0, 1, ... completed iterations) the action target is

  a~ = (1 - beta_k) * a + beta_k * stopgrad(pi_{k-1}(window)),   beta_k = min(beta_T * k / num_iterations, cap),

with pi_{k-1} the policy as it was at the start of iteration k (its own past knowledge refining noisy labels).

Sources: the combination rule of the two branches, the embeddings, the loss weights, the linear beta schedule
with its cap, and the model size (d_model 768, 24 layers) are read from the authors' released code; the paper's
text and its Table 5 values (per-task beta) were not available here (unverified). Deviations, all to keep the
policy causal: the released fine-grained branch fuses each triplet with a stride-3 convolution, scans the fused
vectors and tiles the result back onto all tokens, so a state token sees its own action (the target) and later
steps; here the fine branch scans inside each triplet, so s_t sees only (R_t, s_t). The released PSER blends with
the current prediction and sets beta to 0 in its loss; here the previous iteration's policy gives the
prediction, as the paper describes, and the first iteration (no past policy yet) has beta = 0.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssmrl.agents.decision_transformer import triplet_starts
from ssmrl.ssm.core import RecurrentCore
from ssmrl.ssm.mamba import MambaLayer
from ssmrl.ssm.registry import CORES, build_named
from ssmrl.ssm.stack import StackedCore


class MultiGrainedBlock(nn.Module):
    """One DM block on tokens `[3K, B, D]`: x + Coarse(h) + LN(Fine(h)) with h = RMSNorm(x)."""

    d_model: int
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None
    scan_method: str = "auto"

    @nn.compact
    def __call__(self, x):
        def mamba(name):
            return MambaLayer(self.d_model, self.d_state, self.d_conv, self.expand, self.dt_rank,
                              scan_method=self.scan_method, name=name)

        batch = x.shape[1:-1]
        h = nn.RMSNorm(epsilon=1e-5, name="norm")(x)
        coarse_layer, fine_layer = mamba("coarse"), mamba("fine")
        _, coarse = coarse_layer(coarse_layer.initialize_carry(batch), h, jnp.zeros(x.shape[:-1], bool))
        _, fine = fine_layer(fine_layer.initialize_carry(batch), h, triplet_starts(x.shape[0] // 3, batch))
        return x + coarse + nn.LayerNorm(epsilon=1e-5, name="fine_ln")(fine)


class MultiGrainedMamba(nn.Module):
    """DM's encoder: tokens `[3K, B, d_model]` -> n_layers `MultiGrainedBlock`s -> RMSNorm -> `[3K, B, d_model]`."""

    d_model: int = 768
    n_layers: int = 24
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | None = None
    scan_method: str = "auto"

    @nn.compact
    def __call__(self, tokens, deterministic: bool = True):
        del deterministic  # no dropout in DM's Mamba blocks
        if tokens.shape[0] % 3:
            raise ValueError(f"MultiGrainedMamba needs 3 tokens per step, got a sequence of {tokens.shape[0]}")
        x = tokens
        for layer in range(self.n_layers):
            x = MultiGrainedBlock(self.d_model, self.d_state, self.d_conv, self.expand, self.dt_rank,
                                  self.scan_method, name=f"block_{layer}")(x)
        return nn.RMSNorm(epsilon=1e-5, name="norm_f")(x)


class CoreBackbone(nn.Module):
    """A registry core (`ssmrl.ssm.make_core`) over the tokens `[3K, B, D]` from a zero carry, no resets."""

    core: RecurrentCore

    @nn.compact
    def __call__(self, tokens, deterministic: bool = True):
        carry = self.core.initialize_carry(tokens.shape[1:-1])
        if isinstance(self.core, StackedCore):
            _, y = self.core(carry, tokens, None, deterministic=deterministic)
        else:
            _, y = self.core(carry, tokens, None)
        return y


def make_core_backbone(name: str, d_model: int, n_layers: int, core_kwargs: dict) -> CoreBackbone:
    """`CoreBackbone` of core `name`; d_model and n_layers are passed when the core has them, then core_kwargs."""
    if name not in CORES:
        build_named(CORES, "core", name, {})  # raises the registry's error naming the known cores
    fields = {f.name for f in dataclasses.fields(CORES[name])}
    sizes = {k: v for k, v in {"d_model": d_model, "n_layers": n_layers}.items() if k in fields}
    return CoreBackbone(build_named(CORES, "core", name, {**sizes, **core_kwargs}))


def pser_beta(iteration, num_iterations: int, final: float, cap: float):
    """PSER's weight beta_k = min(final * k / num_iterations, cap) after k completed iterations."""
    return jnp.minimum(final * jnp.asarray(iteration, jnp.float32) / num_iterations, cap)


def pser_target(actions, previous_actions, beta):
    """The self-evolved action target (1 - beta) * a + beta * stopgrad(previous policy's action), `[K, B, A]`."""
    return (1.0 - beta) * actions + beta * jax.lax.stop_gradient(previous_actions)

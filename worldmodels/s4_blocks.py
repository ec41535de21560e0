"""S4WM's backbone: a stack of S4 blocks, each ending in a final MLP.

Block i: the `ssmrl.ssm.s4.S4Core` block (LayerNorm -> S4 -> GELU + GLU -> residual) followed by a pre-norm residual
MLP, x + Dense(D)(GELU(Dense(mlp_ratio * D)(LayerNorm(x)))). The MLP is pointwise in time, so parallel
(convolution) and step (recurrence) modes stay equal and the carry is the S4 core's.

From the paper's project page (fdeng18.github.io/s4wm): S4WM models the dynamics "using a stack of S4 blocks",
and "adding the final MLP in S4 blocks can improve generation quality". Not verified (the paper body could not
be read): the MLP's width ratio, activation and norm placement; those here are ours. `mlp_ratio=0` gives the
plain S4 stack.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn

from ssmrl.ssm.s4 import S4Core


class FinalMLP(nn.Module):
    """`block` (a core block: (carry, x `[T, *batch, D]`, resets) -> (carry, x)), then x + MLP(LayerNorm(x))."""

    block: nn.Module
    mlp_ratio: int

    @nn.compact
    def __call__(self, carry, x, resets, deterministic: bool = True):
        carry, x = self.block(carry, x, resets, deterministic=deterministic)
        width = x.shape[-1]
        hidden = nn.gelu(nn.Dense(self.mlp_ratio * width, name="hidden")(nn.LayerNorm(name="norm")(x)))
        y = nn.Dense(width, name="out")(hidden)
        return carry, x + y


class S4WMCore(S4Core):
    """Stacked S4 blocks with a final MLP each (see the module docstring); options are `S4Core`'s plus
    `mlp_ratio` (hidden width / d_model, 0: no MLP)."""

    mlp_ratio: int = 2

    @nn.nowrap
    def _check(self) -> None:
        if isinstance(self.mlp_ratio, bool) or not isinstance(self.mlp_ratio, int) or self.mlp_ratio < 0:
            raise ValueError(f"S4WMCore: mlp_ratio must be an integer >= 0, got {self.mlp_ratio!r}")

    @nn.nowrap
    def initialize_carry(self, batch_shape: Sequence[int]):
        self._check()
        return super().initialize_carry(batch_shape)

    @nn.nowrap
    def block(self, index: int) -> nn.Module:
        self._check()
        block = super().block(index)
        return FinalMLP(block, self.mlp_ratio, name=f"mlp_{index}") if self.mlp_ratio else block

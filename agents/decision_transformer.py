"""Decision Transformer (Chen et al. 2021, "Decision Transformer: Reinforcement Learning via Sequence Modeling").

A window of the last K steps becomes 3K tokens (R_1, s_1, a_1, ..., R_K, s_K, a_K): returns-to-go R, states s and
actions a are embedded by one layer per modality, the step's learned timestep embedding (an embedding table of
`max_ep_len` entries, no positional embedding) is added to each of its three tokens, and LayerNorm is applied; a
causal backbone maps the tokens `[3K, B, D]` to outputs of the same shape. The action a_t is predicted from the
output at s_t (Linear + tanh), so it depends on R_<=t, s_<=t and a_<t only; the next state and return-to-go are
predicted from the output at a_t (used by Decision Mamba's inverse objectives, not by DT's loss).

DT's backbone (`GPTBackbone`) is GPT-2 without positional embeddings: dropout on the input tokens, n_layers pre-LN
blocks x + Drop(Attn(LN(x))), x + Drop(MLP(LN(x))) with causal multi-head attention (dropout on the attention
weights) and an MLP of 4 * d_model hidden units, then a final LayerNorm; GPT-2's initialisation (normal(0.02),
residual output projections scaled by 1 / sqrt(2 n_layers)). The paper's gym settings are the defaults of
`ssmrl.agents.offline_train.DecisionTransformerConfig` (3 layers, 1 head, d_model 128, ReLU, dropout 0.1, K = 20).

Windows are right-padded (real steps first, zeros after an episode's end) instead of DT's left padding with an
attention mask: with causal attention and no positional embedding the real steps' outputs are the same, and no
mask is needed. `ssmrl.worldmodels.transformer.CausalTransformerCore` is not reused: it adds sinusoidal positions, uses
GELU without dropout, and its KV cache carries information across windows, unlike DT's re-encoded windows.
Simplification: the embedding and head layers use flax's default initialisation, not PyTorch's.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssmrl.rl.networks import activation_fn


def interleave(rtg, states, actions):
    """Token sequence (R_1, s_1, a_1, R_2, ...) `[3K, *batch, D]` from three `[K, *batch, D]` token arrays."""
    stacked = jnp.stack([rtg, states, actions], axis=1)  # [K, 3, *batch, D]
    return stacked.reshape((-1,) + stacked.shape[2:])


def deinterleave(tokens):
    """(R tokens, s tokens, a tokens), each `[K, *batch, D]`, of a `[3K, *batch, D]` token sequence."""
    if tokens.shape[0] % 3:
        raise ValueError(f"a token sequence holds 3 tokens per step, got length {tokens.shape[0]}")
    grouped = tokens.reshape((-1, 3) + tokens.shape[1:])
    return grouped[:, 0], grouped[:, 1], grouped[:, 2]


def triplet_starts(steps: int, batch_shape: tuple[int, ...]):
    """bool `[3K, *batch]`: True at each step's first token (its return-to-go)."""
    first = jnp.arange(3 * steps) % 3 == 0
    return jnp.broadcast_to(first.reshape((-1,) + (1,) * len(batch_shape)), (3 * steps, *batch_shape))


class ResidualEmbed(nn.Module):
    """Decision Mamba's MLP embedding: h = Dense(x); h + Dense(GELU(h)) (exact GELU, as PyTorch's default)."""

    features: int

    @nn.compact
    def __call__(self, x):
        h = nn.Dense(self.features, name="fc1")(x)
        return h + nn.Dense(self.features, name="fc2")(nn.gelu(h, approximate=False))


class TrajectoryEmbed(nn.Module):
    """(rtg `[K, B]`, states `[K, B, S]`, actions `[K, B, A]`, timesteps `[K, B]`) -> tokens `[3K, B, d_model]`.

    DT adds the timestep embedding to each modality's embedding, then applies LayerNorm; Decision Mamba applies
    LayerNorm first and adds the timestep embedding after (`time_after_norm`). `mlp_embedding` swaps the Linear
    embeddings for `ResidualEmbed`s. Dropout with rate `dropout` on the tokens (GPT-2's input dropout).
    """

    d_model: int
    max_ep_len: int
    mlp_embedding: bool = False
    time_after_norm: bool = False
    dropout: float = 0.0

    @nn.compact
    def __call__(self, rtg, states, actions, timesteps, deterministic: bool = True):
        def embed(name):
            return ResidualEmbed(self.d_model, name=name) if self.mlp_embedding else nn.Dense(self.d_model, name=name)

        time = nn.Embed(self.max_ep_len, self.d_model, embedding_init=nn.initializers.normal(1.0),
                        name="embed_timestep")(timesteps)
        parts = [embed("embed_return")(rtg[..., None]), embed("embed_state")(states), embed("embed_action")(actions)]
        norm = nn.LayerNorm(epsilon=1e-5, name="embed_ln")
        if self.time_after_norm:
            tokens = norm(interleave(*parts)) + interleave(time, time, time)
        else:
            tokens = norm(interleave(*(p + time for p in parts)))
        return nn.Dropout(self.dropout)(tokens, deterministic=deterministic)


class GPTBlock(nn.Module):
    """One GPT-2 block on tokens `[L, B, D]`: x + Drop(Attn(LN(x))), x + Drop(MLP(LN(x))), causal attention."""

    d_model: int
    n_heads: int
    n_layers: int
    mlp_ratio: int = 4
    activation: str = "relu"
    dropout: float = 0.1

    @nn.compact
    def __call__(self, x, deterministic: bool = True):
        init = nn.initializers.normal(0.02)
        proj_init = nn.initializers.normal(0.02 / math.sqrt(2 * self.n_layers))
        steps, head_dim = x.shape[0], self.d_model // self.n_heads
        y = nn.LayerNorm(epsilon=1e-5, name="ln_1")(x)
        qkv = nn.DenseGeneral((3, self.n_heads, head_dim), kernel_init=init, name="c_attn")(y)  # [L, B, 3, H, Dh]
        q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
        scores = jnp.einsum("qbhd,kbhd->bhqk", q, k) / math.sqrt(head_dim)
        causal = jnp.tril(jnp.ones((steps, steps), bool))
        weights = jax.nn.softmax(jnp.where(causal, scores, -1e30), axis=-1)
        weights = nn.Dropout(self.dropout)(weights, deterministic=deterministic)
        attended = jnp.einsum("bhqk,kbhd->qbhd", weights, v)
        attended = nn.DenseGeneral(self.d_model, axis=(-2, -1), kernel_init=proj_init, name="attn_proj")(attended)
        x = x + nn.Dropout(self.dropout)(attended, deterministic=deterministic)
        y = nn.LayerNorm(epsilon=1e-5, name="ln_2")(x)
        y = activation_fn(self.activation)(nn.Dense(self.mlp_ratio * self.d_model, kernel_init=init, name="c_fc")(y))
        y = nn.Dense(self.d_model, kernel_init=proj_init, name="mlp_proj")(y)
        return x + nn.Dropout(self.dropout)(y, deterministic=deterministic)


class GPTBackbone(nn.Module):
    """GPT-2 without positional embeddings (DT's backbone): tokens `[L, B, d_model]` -> `[L, B, d_model]`."""

    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 1
    mlp_ratio: int = 4
    activation: str = "relu"
    dropout: float = 0.1

    @nn.compact
    def __call__(self, tokens, deterministic: bool = True):
        if self.d_model % self.n_heads:
            raise ValueError(f"GPTBackbone: d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        x = tokens
        for layer in range(self.n_layers):
            x = GPTBlock(self.d_model, self.n_heads, self.n_layers, self.mlp_ratio, self.activation, self.dropout,
                         name=f"h_{layer}")(x, deterministic)
        return nn.LayerNorm(epsilon=1e-5, name="ln_f")(x)


class DecisionModel(nn.Module):
    """DT's trajectory model around any causal backbone `(tokens [3K, B, D], deterministic) -> [3K, B, D']`.

    __call__(rtg `[K, B]`, states `[K, B, S]`, actions `[K, B, A]`, timesteps `[K, B]` int) -> dict with action
    `[K, B, A]` (predicted at s_t), state `[K, B, S]` and rtg `[K, B]` (next state and return-to-go, predicted at
    a_t). action_head "tanh": Linear + tanh (DT); "mlp": Dense(d_model) -> GELU -> Dense (Decision Mamba's).
    """

    state_dim: int
    action_dim: int
    backbone: nn.Module
    d_model: int = 128
    max_ep_len: int = 1000
    mlp_embedding: bool = False
    time_after_norm: bool = False
    embed_dropout: float = 0.1
    action_head: str = "tanh"

    @nn.compact
    def __call__(self, rtg, states, actions, timesteps, deterministic: bool = True):
        if self.action_head not in ("tanh", "mlp"):
            raise ValueError(f"action_head must be 'tanh' or 'mlp', got {self.action_head!r}")
        tokens = TrajectoryEmbed(self.d_model, self.max_ep_len, self.mlp_embedding, self.time_after_norm,
                                 self.embed_dropout, name="embed")(rtg, states, actions, timesteps, deterministic)
        _, at_state, at_action = deinterleave(self.backbone(tokens, deterministic))
        if self.action_head == "tanh":
            action = jnp.tanh(nn.Dense(self.action_dim, name="predict_action")(at_state))
        else:
            hidden = nn.gelu(nn.Dense(self.d_model, name="predict_action_fc1")(at_state), approximate=False)
            action = nn.Dense(self.action_dim, name="predict_action_fc2")(hidden)
        return {
            "action": action,
            "state": nn.Dense(self.state_dim, name="predict_state")(at_action),
            "rtg": nn.Dense(1, name="predict_rtg")(at_action)[..., 0],
        }

"""Offline training and evaluation of return-conditioned sequence policies (DT, Decision Mamba and variants).

`ssmrl train configs/dt_brax.yaml dataset.path=...` (algo `decision_transformer`), `configs/dm_brax.yaml`
(`decision_mamba`), `configs/dm_plain_brax.yaml` (`decision_mamba_plain`: DT with Mamba blocks) and
`configs/dm_s5_brax.yaml` (`decision_s5`: DT with an S5 core). The config classes below hold each paper's values
as defaults; docs/offline.md says which are confirmed and which are not.

Training: the dataset file (`ssmrl.agents.offline_data`) is loaded once and placed in the training state (so it is an
argument of the compiled update, not a constant); each update samples `batch_size` windows of K steps on device,
takes one AdamW step (linear warm-up, global-norm clipping) on the masked loss

  action_weight * MSE(action, target) + state_weight * Huber(next state) + rtg_weight * Huber(next return-to-go),

with target = the dataset action (DT), or the PSER target of `ssmrl.agents.decision_mamba` (DM). Consequence of keeping
the dataset in the state: every checkpoint holds a copy of it per seed (set checkpoint_every high).

Evaluation (`finish`, after training): for each target return, `eval.num_episodes` episodes per seed in the env the
dataset was made in, all seeds and episodes vmapped in one jitted scan of `eval.max_steps` steps. As DT's
evaluation: the policy sees the last K steps (states normalised with the dataset's statistics, the return-to-go
starting at target / rtg_scale and reduced by each reward / rtg_scale, the current action zero), re-encoded every
step; its action is clipped to the action bounds. Written to `eval.json`: returns and D4RL normalised scores
100 * (R - random) / (expert - random) with the dataset's reference returns, mean and std over seeds.
Targets: `eval.targets` (our env's units), or the paper's D4RL target for the env (`eval.d4rl_targets`) moved to
the same normalised level: target = random + (paper target - D4RL random) / (D4RL expert - D4RL random) *
(expert - random), since brax returns are not on D4RL's scale.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import ssmrl.envs as envs
from ssmrl.agents.decision_mamba import MultiGrainedMamba, make_core_backbone, pser_beta, pser_target
from ssmrl.agents.decision_transformer import DecisionModel, GPTBackbone
from ssmrl.agents.offline_data import (
    OfflineData,
    Windows,
    gather_windows,
    load_dataset,
    load_metadata,
    normalized_score,
    prepare,
    reference_scores,
    sample_windows,
    state_stats,
)
from ssmrl.envs.wrappers import box_bounds
from ssmrl.rl.algorithm import Algorithm
from ssmrl.ssm.registry import CORES

BACKBONES = ("transformer", "multi_grained", *sorted(CORES))
D4RL_REFERENCE = {"halfcheetah": (-280.178953, 12135.0), "hopper": (-20.272305, 3234.3), "walker2d": (1.629008, 4592.3)}
"""D4RL's (random, expert) reference returns of the gym MuJoCo tasks (d4rl REF_MIN_SCORE / REF_MAX_SCORE)."""
DT_TARGETS = {"halfcheetah": 6000.0, "hopper": 3600.0, "walker2d": 5000.0}
"""DT's gym return-to-go conditioning (Chen et al. 2021, appendix)."""
DM_TARGETS = {"halfcheetah": 12000.0, "hopper": 3600.0, "walker2d": 5000.0}
"""The first evaluation target of each env in Decision Mamba's released code."""


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """The dataset file (`.npz` from scripts/make_dataset.py, or D4RL / Minari `.hdf5`); returns-to-go are divided by
    rtg_scale; timesteps >= max_ep_len use the last timestep embedding; reference returns override the file's."""

    path: str = "data/offline/brax-hopper-medium.npz"
    rtg_scale: float = 1000.0
    max_ep_len: int = 1000
    ref_min_score: float | None = None
    ref_max_score: float | None = None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """`DecisionModel` settings. backbone: "transformer" (DT's GPT), "multi_grained" (DM) or an `ssmrl.ssm.CORES` name
    (given d_model and n_layers when it has them, plus core_kwargs; for multi_grained core_kwargs are the Mamba
    layer's d_state, d_conv, expand, dt_rank, scan_method). context: K steps. n_heads, mlp_ratio, activation and
    dropout are the transformer's."""

    backbone: str = "transformer"
    d_model: int = 128
    n_layers: int = 3
    n_heads: int = 1
    mlp_ratio: int = 4
    activation: Literal["relu", "tanh", "leaky_relu", "gelu", "silu"] = "relu"
    dropout: float = 0.1
    embed_dropout: float = 0.1
    context: int = 20
    mlp_embedding: bool = False
    time_after_norm: bool = False
    action_head: Literal["tanh", "mlp"] = "tanh"
    core_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """AdamW (eps adam_eps; weight decay on all parameters, or not on biases and norm scales), lr linearly warmed
    up over warmup_steps then constant, global-norm clipping; loss weights; PSER (beta schedule over iterations of
    steps_per_iter updates, the number of iterations being num_updates // steps_per_iter)."""

    num_updates: int = 100_000
    batch_size: int = 64
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    decay_norms_and_biases: bool = True
    adam_eps: float = 1e-8
    warmup_steps: int = 10_000
    grad_clip: float = 0.25
    action_weight: float = 1.0
    state_weight: float = 0.0
    rtg_weight: float = 0.0
    pser: bool = False
    pser_beta_final: float = 0.85
    pser_beta_cap: float = 0.5
    steps_per_iter: int = 10_000


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """env (empty: the dataset's env) and env_kwargs (empty: the dataset's); episodes per seed and target; episode
    length; targets in the env's units (empty: d4rl_targets moved to our env, see the module docstring)."""

    env: str = ""
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_episodes: int = 100
    max_steps: int = 1000
    targets: tuple[float, ...] = ()
    d4rl_targets: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DT_TARGETS))
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class DecisionTransformerConfig:
    """Decision Transformer (Chen et al. 2021) on gym: the paper's and its code's values are the defaults
    (3 layers, 1 head, d_model 128, ReLU, dropout 0.1, K 20, batch 64, lr 1e-4, weight decay 1e-4, 10k warm-up
    steps, clip 0.25, 10 x 10k updates, 100 evaluation episodes)."""

    dataset: DatasetConfig = dataclasses.field(default_factory=DatasetConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)


@dataclasses.dataclass(frozen=True)
class DMModelConfig(ModelConfig):
    """Decision Mamba's model (released code): multi-grained Mamba, d_model 768, 24 layers, d_state 16, expand 2,
    conv 4, MLP embeddings (LayerNorm before the timestep embedding) and action head, no dropout."""

    backbone: str = "multi_grained"
    d_model: int = 768
    n_layers: int = 24
    dropout: float = 0.0
    embed_dropout: float = 0.0
    mlp_embedding: bool = True
    time_after_norm: bool = True
    action_head: Literal["tanh", "mlp"] = "mlp"
    core_kwargs: dict[str, Any] = dataclasses.field(default_factory=lambda: {"d_state": 16, "d_conv": 4, "expand": 2})


@dataclasses.dataclass(frozen=True)
class DMTrainConfig(TrainConfig):
    """Decision Mamba's training (released code): AdamW with weight decay 1e-5 (not on biases and norms) and eps
    1e-6, 2.5k warm-up steps, 40 iterations of 2.5k updates, loss weights 0.9 / 0.05 / 0.05, PSER beta_T 0.85
    (the README's example; per-task values unverified) capped at 0.5."""

    weight_decay: float = 1e-5
    decay_norms_and_biases: bool = False
    adam_eps: float = 1e-6
    warmup_steps: int = 2500
    action_weight: float = 0.9
    state_weight: float = 0.05
    rtg_weight: float = 0.05
    pser: bool = True
    steps_per_iter: int = 2500


@dataclasses.dataclass(frozen=True)
class DMEvalConfig(EvalConfig):
    """Decision Mamba's evaluation (released code): 20 episodes, its first target per env."""

    num_episodes: int = 20
    d4rl_targets: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DM_TARGETS))


@dataclasses.dataclass(frozen=True)
class DecisionMambaConfig(DecisionTransformerConfig):
    """Decision Mamba (Lv et al. 2024) with the values of the authors' released code as defaults."""

    model: DMModelConfig = dataclasses.field(default_factory=DMModelConfig)
    train: DMTrainConfig = dataclasses.field(default_factory=DMTrainConfig)
    eval: DMEvalConfig = dataclasses.field(default_factory=DMEvalConfig)


@dataclasses.dataclass(frozen=True)
class PlainMambaModelConfig(ModelConfig):
    """DT's model with Mamba blocks (`ssmrl.ssm.MambaCore`: d_state 16, expand 2, conv 4) in place of the GPT."""

    backbone: str = "mamba"


@dataclasses.dataclass(frozen=True)
class PlainDecisionMambaConfig(DecisionTransformerConfig):
    """Plain Decision Mamba (Ota 2024): DT's model, training and evaluation with Mamba blocks in place of the GPT
    blocks; DT's hyperparameters (unverified for this paper)."""

    model: PlainMambaModelConfig = dataclasses.field(default_factory=PlainMambaModelConfig)


@dataclasses.dataclass(frozen=True)
class S5ModelConfig(ModelConfig):
    """DT's model with an S5 core (`ssmrl.ssm.S5Core`, state size 64) in place of the GPT."""

    backbone: str = "s5"
    core_kwargs: dict[str, Any] = dataclasses.field(default_factory=lambda: {"state_size": 64})


@dataclasses.dataclass(frozen=True)
class DecisionS5Config(DecisionTransformerConfig):
    """Decision-S5 (ours): DT's recipe with an S5 core in place of the GPT."""

    model: S5ModelConfig = dataclasses.field(default_factory=S5ModelConfig)


@chex.dataclass(frozen=True)
class OfflineState:
    """One seed's training state: params, opt_state, prev_params (PSER's previous-iteration policy; None without
    PSER), key (raw uint32 [2]), step (updates done), data (`OfflineData`), state_mean, state_std `[S]`."""

    params: Any
    opt_state: Any
    prev_params: Any
    key: jax.Array
    step: jax.Array
    data: OfflineData
    state_mean: jax.Array
    state_std: jax.Array


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a config builds: the dataset (numpy `OfflineData`), its statistics and metadata, the model, the
    optimiser and its learning-rate schedule."""

    data: OfflineData
    state_mean: np.ndarray
    state_std: np.ndarray
    metadata: dict[str, Any]
    model: DecisionModel
    optimizer: optax.GradientTransformation
    schedule: Any


def check_config(config: DecisionTransformerConfig) -> None:
    """ValueError naming the first setting the trainer cannot run with."""
    m, t, d, e = config.model, config.train, config.dataset, config.eval
    if m.backbone not in BACKBONES:
        raise ValueError(f"model.backbone must be one of {list(BACKBONES)}, got {m.backbone!r}")
    for name, value in (("model.d_model", m.d_model), ("model.n_layers", m.n_layers), ("model.n_heads", m.n_heads),
                        ("model.context", m.context), ("train.num_updates", t.num_updates),
                        ("train.batch_size", t.batch_size), ("train.warmup_steps", t.warmup_steps),
                        ("train.steps_per_iter", t.steps_per_iter), ("dataset.max_ep_len", d.max_ep_len),
                        ("eval.max_steps", e.max_steps)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if e.num_episodes < 0:
        raise ValueError(f"eval.num_episodes must be >= 0 (0: no evaluation), got {e.num_episodes}")
    if d.rtg_scale <= 0:
        raise ValueError(f"dataset.rtg_scale must be > 0, got {d.rtg_scale}")
    for name in ("pser_beta_final", "pser_beta_cap"):
        if not 0.0 <= getattr(t, name) <= 1.0:
            raise ValueError(f"train.{name} must be in [0, 1], got {getattr(t, name)}")


def make_model(config: DecisionTransformerConfig, state_dim: int, action_dim: int) -> DecisionModel:
    """The `DecisionModel` of a config for a dataset with `state_dim` observations and `action_dim` actions."""
    m = config.model
    if m.backbone == "transformer":
        if m.core_kwargs:
            raise ValueError(f"model.core_kwargs {sorted(m.core_kwargs)} are not used by the transformer backbone; set "
                             "model.n_heads, model.mlp_ratio, model.activation and model.dropout instead")
        backbone = GPTBackbone(m.d_model, m.n_layers, m.n_heads, m.mlp_ratio, m.activation, m.dropout)
    elif m.backbone == "multi_grained":
        accepted = {"d_state", "d_conv", "expand", "dt_rank", "scan_method"}
        if set(m.core_kwargs) - accepted:
            raise ValueError(f"model.core_kwargs {sorted(set(m.core_kwargs) - accepted)} are not options of the "
                             f"multi-grained backbone; accepted: {sorted(accepted)}")
        backbone = MultiGrainedMamba(m.d_model, m.n_layers, **m.core_kwargs)
    else:
        backbone = make_core_backbone(m.backbone, m.d_model, m.n_layers, m.core_kwargs)
    return DecisionModel(state_dim, action_dim, backbone, m.d_model, config.dataset.max_ep_len, m.mlp_embedding,
                         m.time_after_norm, m.embed_dropout, m.action_head)


def decay_mask(params):
    """True for the parameters weight decay applies to: all but biases and norm scales."""
    return jax.tree_util.tree_map_with_path(lambda path, _: getattr(path[-1], "key", None) not in ("bias", "scale"),
                                            params)


def make_optimizer(t: TrainConfig):
    """(AdamW after global-norm clipping, its learning-rate schedule: lr * min((count + 1) / warmup_steps, 1))."""

    def schedule(count):
        return t.learning_rate * jnp.minimum((count + 1) / t.warmup_steps, 1.0)

    mask = None if t.decay_norms_and_biases else decay_mask
    adamw = optax.adamw(schedule, eps=t.adam_eps, weight_decay=t.weight_decay, mask=mask)
    return optax.chain(optax.clip_by_global_norm(t.grad_clip), adamw), schedule


def build(config: DecisionTransformerConfig) -> Setup:
    """Load the dataset and build model and optimiser; ValueError/FileNotFoundError for bad settings."""
    check_config(config)
    arrays, metadata = load_dataset(config.dataset.path)
    mean, std = state_stats(arrays["observations"])
    data = prepare(arrays, config.dataset.rtg_scale, mean, std)
    model = make_model(config, data.observations.shape[1], data.actions.shape[1])
    optimizer, schedule = make_optimizer(config.train)
    return Setup(data, mean, std, metadata, model, optimizer, schedule)


def apply_model(model: DecisionModel, params, windows: Windows, deterministic: bool = True, key=None) -> dict:
    """The model's predictions on `windows` (dropout from `key` unless deterministic)."""
    rngs = None if deterministic else {"dropout": key}
    return model.apply(params, windows.rtg, windows.states, windows.actions, windows.timesteps, deterministic,
                       rngs=rngs)


def masked_mean(errors, mask):
    """Mean of `errors` `[K, B, ...]` over the steps where `mask` `[K, B]` is True (0 when none is)."""
    weight = mask.reshape(mask.shape + (1,) * (errors.ndim - mask.ndim)).astype(errors.dtype)
    count = jnp.sum(weight) * (errors.size // mask.size)
    return jnp.sum(errors * weight) / jnp.maximum(count, 1.0)


def sequence_loss(preds: dict, windows: Windows, action_target, t: TrainConfig):
    """(loss, terms): masked action MSE against `action_target`, Huber losses of the next state and return-to-go
    predicted at each action token (the window's next step, where it is real)."""
    action = masked_mean(jnp.square(preds["action"] - action_target), windows.mask)
    next_mask = windows.mask[1:]
    state = masked_mean(optax.huber_loss(preds["state"][:-1], windows.states[1:]), next_mask)
    rtg = masked_mean(optax.huber_loss(preds["rtg"][:-1], windows.rtg[1:]), next_mask)
    loss = t.action_weight * action + t.state_weight * state + t.rtg_weight * rtg
    action_error = masked_mean(jnp.square(preds["action"] - windows.actions), windows.mask)
    return loss, {"loss": loss, "action_loss": action, "state_loss": state, "rtg_loss": rtg,
                  "action_error": action_error}


def make_offline(config: DecisionTransformerConfig) -> Algorithm:
    """The offline trainer of a config as an `Algorithm` (see the module docstring). The evaluation settings are
    checked here too, so a bad target or env fails before training, not after."""
    setup = build(config)
    if config.eval.num_episodes:
        evaluation_setup(config, setup.metadata, setup.data.observations.shape[1], setup.data.actions.shape[1])
    model, optimizer, t, m = setup.model, setup.optimizer, config.train, config.model
    num_iterations = max(t.num_updates // t.steps_per_iter, 1)
    max_ep_len = config.dataset.max_ep_len

    def init(key):
        k_params, k_dropout, k_state = jax.random.split(key, 3)
        data = jax.tree.map(jnp.asarray, setup.data)
        windows = gather_windows(data, jnp.zeros((1,), jnp.int32), m.context, max_ep_len)
        params = model.init({"params": k_params, "dropout": k_dropout}, windows.rtg, windows.states,
                            windows.actions, windows.timesteps, True)
        return OfflineState(params=params, opt_state=optimizer.init(params), prev_params=params if t.pser else None,
                            key=k_state, step=jnp.zeros((), jnp.int32), data=data,
                            state_mean=jnp.asarray(setup.state_mean), state_std=jnp.asarray(setup.state_std))

    def update(state: OfflineState):
        key, k_batch, k_dropout = jax.random.split(state.key, 3)
        windows = sample_windows(state.data, k_batch, t.batch_size, m.context, max_ep_len)
        prev_params, beta, target = state.prev_params, jnp.zeros((), jnp.float32), windows.actions
        if t.pser:
            new_iteration = state.step % t.steps_per_iter == 0
            prev_params = jax.tree.map(lambda p, q: jnp.where(new_iteration, p, q), state.params, prev_params)
            beta = pser_beta(state.step // t.steps_per_iter, num_iterations, t.pser_beta_final, t.pser_beta_cap)
            target = pser_target(windows.actions, apply_model(model, prev_params, windows)["action"], beta)

        def loss_fn(params):
            return sequence_loss(apply_model(model, params, windows, False, k_dropout), windows, target, t)

        grads, terms = jax.grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(terms, beta=beta, lr=setup.schedule(state.step), grad_norm=optax.global_norm(grads))
        state = state.replace(params=params, opt_state=opt_state, prev_params=prev_params, key=key,
                              step=state.step + 1)
        return state, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)

    return Algorithm(init=init, update=update, num_updates=t.num_updates, steps_per_update=t.batch_size * m.context)


def evaluation_setup(config: DecisionTransformerConfig, metadata: dict[str, Any], state_dim: int, action_dim: int):
    """(env name, env, env params, reference returns (random, expert), target returns) of the evaluation: eval.env or
    the dataset's env (with eval.env_kwargs, else the dataset's), episodes of eval.max_steps steps; ValueError when
    the env's shapes do not match the dataset's or no reference returns or targets can be found."""
    ref_min, ref_max = reference_scores(metadata, config.dataset.ref_min_score, config.dataset.ref_max_score)
    name = config.eval.env or metadata.get("env")
    if not name:
        raise ValueError(f"the dataset {config.dataset.path!r} names no env; set eval.env (e.g. brax/hopper)")
    kwargs = dict(config.eval.env_kwargs or ({} if config.eval.env else metadata.get("env_kwargs") or {}))
    env, params = envs.make(name, **{**kwargs, "max_steps_in_episode": config.eval.max_steps})
    env_dims = (tuple(env.observation_space(params).shape), tuple(env.action_space(params).shape))
    if env_dims != ((state_dim,), (action_dim,)):
        raise ValueError(f"eval env {name!r} has observation and action shapes {env_dims}, the dataset "
                         f"{config.dataset.path!r} has ({state_dim},) and ({action_dim},); set eval.env")
    return name, env, params, (ref_min, ref_max), eval_targets(config, name, ref_min, ref_max)


def eval_targets(config: DecisionTransformerConfig, env_name: str, ref_min: float, ref_max: float) -> list[float]:
    """The target returns in the env's units (see the module docstring); ValueError when none can be found."""
    if config.eval.targets:
        return [float(x) for x in config.eval.targets]
    task = env_name.split("/")[-1].split("-")[0].lower()
    if task not in config.eval.d4rl_targets or task not in D4RL_REFERENCE:
        raise ValueError(f"no paper target return for env {env_name!r} (known: {sorted(config.eval.d4rl_targets)}); "
                         "set eval.targets")
    d4rl_min, d4rl_max = D4RL_REFERENCE[task]
    level = (config.eval.d4rl_targets[task] - d4rl_min) / (d4rl_max - d4rl_min)
    return [ref_min + level * (ref_max - ref_min)]


def rollout_returns(model: DecisionModel, env, env_params, params, state_mean, state_std, target, key,
                    context: int, num_episodes: int, steps: int, rtg_scale: float, max_ep_len: int):
    """Returns `[num_episodes]` of one policy conditioned on `target` (env units), each episode's first `steps`
    steps; the policy re-encodes the last `context` steps every step (see the module docstring)."""
    low, high = box_bounds(env.action_space(env_params))
    k_reset, k_steps = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_episodes), env_params)
    length, state_dim, action_dim = max(steps, context), state_mean.shape[0], low.shape[0]
    steps_so_far = jnp.minimum(jnp.arange(length), max_ep_len - 1)[:, None]
    history = Windows(rtg=jnp.zeros((length, num_episodes)), states=jnp.zeros((length, num_episodes, state_dim)),
                      actions=jnp.zeros((length, num_episodes, action_dim)),
                      timesteps=jnp.broadcast_to(steps_so_far, (length, num_episodes)),
                      mask=jnp.ones((length, num_episodes), bool))

    def step(carry, inputs):
        env_state, obs, history, rtg, total, alive = carry
        t, key = inputs
        history = history.replace(rtg=history.rtg.at[t].set(rtg),
                                  states=history.states.at[t].set((obs - state_mean) / state_std))
        first = jnp.maximum(t - context + 1, 0)  # the window: steps first .. first + K - 1, step t at t - first
        window = jax.tree.map(lambda x: jax.lax.dynamic_slice_in_dim(x, first, context), history)
        predicted = jax.lax.dynamic_index_in_dim(apply_model(model, params, window)["action"], t - first, 0, False)
        action = jnp.clip(predicted, low, high)
        history = history.replace(actions=history.actions.at[t].set(action))
        obs, env_state, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(key, num_episodes), env_state, action, env_params)
        total = total + jnp.where(alive, reward, 0.0)
        alive = alive & ~(terminated | truncated)
        return (env_state, obs, history, rtg - reward / rtg_scale, total, alive), None

    start = (env_state, obs, history, jnp.full((num_episodes,), target / rtg_scale, jnp.float32),
             jnp.zeros((num_episodes,), jnp.float32), jnp.ones((num_episodes,), bool))
    inputs = (jnp.arange(steps), jax.random.split(k_steps, steps))
    (_, _, _, _, total, _), _ = jax.lax.scan(step, start, inputs)
    return total


def make_evaluator(config: DecisionTransformerConfig, model: DecisionModel, env, env_params):
    """jit((stacked params, state_mean, state_std `[seeds, ...]`, target, keys `[seeds, 2]`) -> returns
    `[seeds, num_episodes]`): every seed and episode at once."""
    e, d = config.eval, config.dataset

    def one_seed(params, mean, std, target, key):
        return rollout_returns(model, env, env_params, params, mean, std, target, key, config.model.context,
                               e.num_episodes, e.max_steps, d.rtg_scale, d.max_ep_len)

    return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, 0, None, 0)))


def evaluate(config: DecisionTransformerConfig, state: OfflineState, metadata: dict[str, Any]) -> dict[str, Any]:
    """Returns and normalised scores of a seed-stacked state for every target (see the module docstring)."""
    state_dim, action_dim = state.state_mean.shape[-1], state.data.actions.shape[-1]
    env_name, env, env_params, (ref_min, ref_max), targets = evaluation_setup(config, metadata, state_dim, action_dim)
    run = make_evaluator(config, make_model(config, state_dim, action_dim), env, env_params)
    seeds = state.step.shape[0]
    keys = jax.random.split(jax.random.PRNGKey(config.eval.seed), seeds)
    results = []
    for target in targets:
        returns = np.asarray(run(state.params, state.state_mean, state.state_std, jnp.float32(target), keys))
        per_seed = returns.mean(axis=1)
        scores = normalized_score(per_seed, ref_min, ref_max)
        results.append({
            "target_return": target, "return_mean": float(per_seed.mean()), "return_std": float(per_seed.std()),
            "normalized_mean": float(scores.mean()), "normalized_std": float(scores.std()),
            "per_seed_return": per_seed.tolist(), "per_seed_normalized": scores.tolist(),
        })
    return {"env": env_name, "dataset": config.dataset.path, "kind": metadata.get("kind"), "ref_min_score": ref_min,
            "ref_max_score": ref_max, "episodes_per_seed": config.eval.num_episodes, "seeds": seeds,
            "score": results[0]["normalized_mean"], "targets": results}


def finish(config: DecisionTransformerConfig, final_state: OfflineState, out_dir: Path) -> dict[str, Any] | None:
    """Evaluate the final (seed-stacked) state and write out_dir/eval.json (nothing when eval.num_episodes is 0)."""
    if config.eval.num_episodes == 0:
        return None
    report = evaluate(config, final_state, load_metadata(config.dataset.path))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    for result in report["targets"]:
        print(f"offline eval {report['env']} ({report['kind']}): target {result['target_return']:.1f} return "
              f"{result['return_mean']:.1f} +- {result['return_std']:.1f}, normalised score "
              f"{result['normalized_mean']:.1f} +- {result['normalized_std']:.1f} over {report['seeds']} seed(s)")
    return report


"""Training and evaluation of S4WM on the memory world-model suites (`ssmrl train configs/s4wm_*.yaml`).

Data: each update rolls `batch_size` fresh episodes of the env for `seq_len` steps with the env's data policy,
inside the jitted update (no dataset is held in memory or closed over), then takes one optimiser step on
the negative ELBO over the whole sequences (parallel mode). Offline datasets for other uses are written by
`scripts/make_wm_dataset.py` (same collector, `ssmrl.worldmodels.data`). Deviation: the paper's experiments are offline,
on collected datasets (per a third-party summary; their size is not known here); fresh episodes every update
never repeat a sequence.

Evaluation (`finish`): `eval.num_episodes` episodes from a fixed seed; the model observes the first C
(`eval.context`) frames, then imagines the next H (`eval.horizon`) open loop from the true actions. Reported:
per-pixel MSE of imagined vs true frames (pixels in [0, 1]), PSNR, and reward-prediction accuracy (predicted
reward rounded to the nearest of {0, 1}, also on the rewarded steps only) both in imagination and while
observing the context: the paper's project page reports reward prediction in both settings for Distracting
Memory. Written: `eval.json` and `imagination.png` (rows: real, imagined) in the run directory.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

import ssmrl.envs as envs
from ssmrl.rl.algorithm import Algorithm
from ssmrl.worldmodels.data import collect, model_inputs
from ssmrl.worldmodels.s4wm import S4WM, LossWeights, elbo_loss, imagine


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """name: a registered env (`"memory_wm/FourRooms"`); max_steps 0 keeps the suite's episode length;
    kwargs: further constructor overrides."""

    name: str = "memory_wm/FourRooms"
    image_size: int = 64
    max_steps: int = 0
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The world model (`ssmrl.worldmodels.s4wm.S4WM`); core_kwargs go to the backbone (`ssmrl.ssm.make_core`
    options)."""

    backbone: str = "s4"
    core_kwargs: dict[str, Any] = dataclasses.field(default_factory=lambda: {"d_model": 256, "n_layers": 4})
    latent_dim: int = 32
    units: int = 256
    cnn_depth: int = 32
    min_std: float = 0.1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """batch_size episodes of seq_len steps (0: the whole episode) per update; Adam with global-norm clipping."""

    num_updates: int = 1000
    batch_size: int = 16
    seq_len: int = 0
    learning_rate: float = 3e-4
    grad_clip: float = 100.0
    kl_balance: float = 0.8
    free_nats: float = 1.0
    kl_scale: float = 1.0
    reward_scale: float = 1.0
    continue_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Context C and imagination horizon H (C + H <= episode length), episodes, frames in the PNG strip."""

    context: int = 500
    horizon: int = 500
    num_episodes: int = 8
    seed: int = 12345
    strip_frames: int = 10


@dataclasses.dataclass(frozen=True)
class S4WMConfig:
    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)


@chex.dataclass(frozen=True)
class S4WMState:
    """params, opt_state, key (raw uint32 [2]), step: updates done."""

    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array


@dataclasses.dataclass(frozen=True)
class Setup:
    """What a config builds: env, env params, model, optimiser, loss weights, sequence length."""

    env: Any
    env_params: Any
    model: S4WM
    optimizer: optax.GradientTransformation
    weights: LossWeights
    seq_len: int


def build(config: S4WMConfig) -> Setup:
    """Env, model and optimiser of a config; ValueError for inconsistent lengths."""
    overrides = dict(config.env.kwargs, image_size=config.env.image_size)
    if config.env.max_steps:
        overrides["max_steps"] = config.env.max_steps
    env, env_params = envs.make(config.env.name, **overrides)
    episode = int(env_params.max_steps_in_episode)
    seq_len = config.train.seq_len or episode
    if not 2 <= seq_len <= episode:
        raise ValueError(f"train.seq_len must be in [2, episode length {episode}] (0: whole episode), got {seq_len}")
    if config.eval.context < 1 or config.eval.horizon < 1 or config.eval.context + config.eval.horizon > episode:
        raise ValueError(
            f"eval.context ({config.eval.context}) and eval.horizon ({config.eval.horizon}) must be >= 1 with "
            f"context + horizon <= episode length {episode}"
        )
    m = config.model
    model = S4WM(
        obs_shape=tuple(env.observation_space(env_params).shape), action_dim=env.num_actions, backbone=m.backbone,
        core_kwargs=dict(m.core_kwargs), latent_dim=m.latent_dim, units=m.units, cnn_depth=m.cnn_depth,
        min_std=m.min_std,
    )
    t = config.train
    optimizer = optax.chain(optax.clip_by_global_norm(t.grad_clip), optax.adam(t.learning_rate))
    weights = LossWeights(kl_balance=t.kl_balance, free_nats=t.free_nats, kl_scale=t.kl_scale,
                          reward_scale=t.reward_scale, continue_scale=t.continue_scale)
    return Setup(env, env_params, model, optimizer, weights, seq_len)


def observe(setup: Setup, params, inputs: dict, key):
    """`S4WM.observe` from a zero carry on `model_inputs` `[T, B, ...]`."""
    model = setup.model
    carry = model.initial_carry(inputs["resets"].shape[1:])
    return model.apply(params, carry, inputs["obs"], inputs["prev_actions"], inputs["resets"], key,
                       method=S4WM.observe)


def make_s4wm(config: S4WMConfig) -> Algorithm:
    """The S4WM trainer as an `Algorithm` (see the module docstring)."""
    setup = build(config)
    batch, steps = config.train.batch_size, setup.seq_len
    if batch < 1:
        raise ValueError(f"train.batch_size must be >= 1, got {batch}")

    def loss_fn(params, inputs, key):
        _, out = observe(setup, params, inputs, key)
        return elbo_loss(out, inputs["obs"], inputs["rewards"], inputs["continues"], setup.weights)

    def init(key):
        k_data, k_params, k_sample, k_state = jax.random.split(key, 4)
        inputs = model_inputs(collect(setup.env, setup.env_params, k_data, 1, 2), setup.env.num_actions)
        carry = setup.model.initial_carry((1,))
        params = setup.model.init(k_params, carry, inputs["obs"], inputs["prev_actions"], inputs["resets"], k_sample,
                                  method=S4WM.observe)
        return S4WMState(params=params, opt_state=setup.optimizer.init(params), key=k_state, step=jnp.int32(0))

    def update(state: S4WMState):
        key, k_data, k_loss = jax.random.split(state.key, 3)
        inputs = model_inputs(collect(setup.env, setup.env_params, k_data, batch, steps), setup.env.num_actions)
        (_, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, inputs, k_loss)
        updates, opt_state = setup.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        terms = dict(terms, grad_norm=optax.global_norm(grads).astype(jnp.float32))
        return S4WMState(params=params, opt_state=opt_state, key=key, step=state.step + 1), terms

    return Algorithm(init=init, update=update, num_updates=config.train.num_updates, steps_per_update=batch * steps)


def reward_hits(predicted, true):
    """Reward prediction rounded to the nearest of {0, 1} == true reward: bool, same shape `[T, N]`."""
    return jnp.clip(jnp.round(predicted), 0, 1) == true


def observe_context(setup: Setup, params, key, context: int, horizon: int, episodes: int):
    """Roll `episodes` fresh episodes of `context + horizon` steps and observe the first `context` frames.
    Returns (carry after the context, `model_inputs` of the whole episodes `[C + H, N, ...]`, observe outputs
    `[C, N, ...]`)."""
    k_data, k_obs = jax.random.split(key)
    data = collect(setup.env, setup.env_params, k_data, episodes, context + horizon)
    inputs = model_inputs(data, setup.env.num_actions)
    carry, seen = observe(setup, params, jax.tree.map(lambda x: x[:context], inputs), k_obs)
    return carry, inputs, seen


def score_imagination(setup: Setup, params, carry, inputs: dict, seen: dict, key) -> dict:
    """Imagine the last H frames of `inputs` from `carry` with the true actions and score them (C = context
    length of `seen`).

    Returns arrays: mse `[H]` (per imagined step, mean over episodes and pixels in [0, 1]), psnr `[H]`,
    reward_hit, rewarded `[H, N]` (imagined reward right; true reward > 0), context_reward_hit,
    context_rewarded `[C, N]` (the same while observing the context, posterior mode), real and imagined
    frames uint8 `[H, N, S, S, C]`.
    """
    context = seen["reward"].shape[0]
    actions = inputs["prev_actions"][context:]  # the action leading to each imagined frame
    _, out = imagine(setup.model, params, carry, actions, key, inputs["resets"][context:])
    real = inputs["obs"][context:] + 0.5
    imagined = jnp.clip(out["frame"] + 0.5, 0.0, 1.0)
    per_frame = jnp.mean((imagined - real) ** 2, axis=tuple(range(2, real.ndim)))  # [H, N]
    true_reward, context_reward = inputs["rewards"][context:], inputs["rewards"][:context]
    return dict(
        mse=per_frame.mean(1), psnr=jnp.mean(10.0 * jnp.log10(1.0 / jnp.maximum(per_frame, 1e-10)), 1),
        reward_hit=reward_hits(out["reward"], true_reward), rewarded=true_reward > 0,
        context_reward_hit=reward_hits(seen["reward"], context_reward), context_rewarded=context_reward > 0,
        real=(real * 255).astype(jnp.uint8), imagined=(imagined * 255).astype(jnp.uint8),
    )


def evaluate_imagination(setup: Setup, params, key, context: int, horizon: int, episodes: int) -> dict:
    """`observe_context` then `score_imagination`: observe C frames of fresh episodes, imagine and score H more."""
    k_context, k_imagine = jax.random.split(key)
    carry, inputs, seen = observe_context(setup, params, k_context, context, horizon, episodes)
    return score_imagination(setup, params, carry, inputs, seen, k_imagine)


def summarize(result: dict) -> dict[str, float]:
    """Scalars of `evaluate_imagination`: mse, psnr, and reward accuracy over all steps and over the rewarded
    steps only (NaN if none), in imagination (reward_*) and while observing the context (context_reward_*)."""
    scores = dict(mse=float(np.mean(result["mse"])), psnr=float(np.mean(result["psnr"])))
    for prefix in ("", "context_"):
        hits, rewarded = np.asarray(result[f"{prefix}reward_hit"]), np.asarray(result[f"{prefix}rewarded"])
        scores[f"{prefix}reward_accuracy"] = float(hits.mean())
        scores[f"{prefix}rewarded_accuracy"] = float(hits[rewarded].mean()) if rewarded.any() else float("nan")
    return scores


def save_strip(path: Path, real, imagined, frames: int) -> None:
    """PNG of `frames` evenly spaced imagined steps of episode 0: top row real, bottom row imagined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    picks = np.linspace(0, real.shape[0] - 1, min(frames, real.shape[0])).astype(int)
    rows = [np.concatenate(list(np.asarray(x)[picks, 0]), axis=1) for x in (real, imagined)]
    plt.imsave(path, np.concatenate(rows, axis=0))


def finish(config: S4WMConfig, final_state, out_dir: Path) -> dict:
    """Evaluate every seed of a (seed-stacked) final state; write eval.json and imagination.png (seed 0)."""
    setup = build(config)
    e = config.eval
    run = jax.jit(lambda params, key: evaluate_imagination(setup, params, key, e.context, e.horizon, e.num_episodes))
    seeds = jax.tree.leaves(final_state.params)[0].shape[0]
    per_seed = []
    for seed in range(seeds):
        params = jax.tree.map(lambda x, s=seed: x[s], final_state.params)
        result = run(params, jax.random.PRNGKey(e.seed))
        per_seed.append(summarize(result))
        if seed == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_strip(out_dir / "imagination.png", result["real"], result["imagined"], e.strip_frames)
            mse_curve = np.asarray(result["mse"]).tolist()
    report = {
        "env": config.env.name, "backbone": config.model.backbone, "context": e.context, "horizon": e.horizon,
        **{k: float(np.mean([s[k] for s in per_seed])) for k in per_seed[0]},
        "per_seed": per_seed, "mse_per_step_seed0": mse_curve,
    }
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    print(f"s4wm eval: C={e.context} H={e.horizon} mse={report['mse']:.5f} psnr={report['psnr']:.2f} "
          f"reward_acc={report['reward_accuracy']:.3f} context_reward_acc={report['context_reward_accuracy']:.3f}")
    return report

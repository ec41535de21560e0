"""Evaluation of Drama runs: imagined vs real rollouts (the `finish` hook) and `ssmrl evaluate RUN_DIR`.

Imagination check (`finish`, after training): `eval.episodes` fresh envs act with the trained policy for
`eval.context + eval.horizon` steps; the world model observes the first C steps (sequence mode), then imagines the
next H frames open loop from the real actions (step mode, latents from the prior, frames decoded from them).
Written: `eval.json` (per-step MSE of imagined vs real observations, mean over envs and seeds) and
`imagination.gif` (seed 0, env 0: real | model, first the C observed steps as posterior reconstructions, then the
H imagined ones). Observations are drawn as images (MinAtar's channels in distinct colours) or, for vectors, as
a colour strip.

`ssmrl evaluate RUN_DIR [--episodes N] [--checkpoint STEP] [--greedy] [--render]`: the first-episode return of
N parallel envs per training seed with the policy acting as in training (posterior latent of the current frame,
carried backbone state), mean +- std, `eval.json`; `--render` also writes `imagination.gif`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ssmrl.rl.evaluation import EvalArgumentParser, of_seed, positive_count
from ssmrl.rl.paths import writable_file
from ssmrl.worldmodels.drama import DramaWorldModel
from ssmrl.worldmodels.imagination import imagine, observe_context
from ssmrl.worldmodels.train_drama import DramaConfig, DramaState, Setup, act, build, make_env


def rollout(setup: Setup, config: DramaConfig, state: DramaState, key, num_envs: int, steps: int):
    """Act with the policy of `state` (one seed) in `num_envs` fresh envs for `steps` steps.
    Returns obs `[T, N, *obs_shape]` (model inputs), action, reward, first `[T, N]`."""
    env, env_params = make_env(dataclasses.replace(config.env, num_envs=num_envs))
    model = setup.model
    k_env, k_run = jax.random.split(key)
    obs, env_state = env.reset(k_env, env_params)
    first = jnp.ones((num_envs,), bool)
    carry = model.initial_carry((num_envs,))
    h_prev = jnp.zeros((num_envs, state.h_prev.shape[-1]))

    def step(loop, k):
        env_state, obs, first, carry, h_prev = loop
        k_act, k_env = jax.random.split(k)
        obs = setup.from_storage(setup.to_storage(obs))
        carry, h, action = act(setup, state.wm_variables, state.behaviour, carry, h_prev, obs, first, k_act)
        next_obs, env_state, reward, terminated, truncated, _ = env.step(k_env, env_state, action, env_params)
        record = dict(obs=obs, action=action, reward=reward, first=first)
        return (env_state, next_obs, terminated | truncated, carry, h), record

    return jax.lax.scan(step, (env_state, obs, first, carry, h_prev), jax.random.split(k_run, steps))[1]


def imagination_vs_real(setup: Setup, config: DramaConfig, state: DramaState, key):
    """Observe C real steps, imagine H more from the real actions: dict of real `[C + H, N, *obs_shape]`, model
    (posterior reconstructions for the first C steps, imagined frames after) and mse `[H]` (mean over N)."""
    e, model, variables = config.eval, setup.model, state.wm_variables
    k_roll, k_obs, k_prior, k_img = jax.random.split(key, 4)
    data = rollout(setup, config, state, k_roll, e.episodes, e.context + e.horizon)
    c = e.context
    carry, z, h = observe_context(model, variables, data["obs"][:c], data["action"][:c], data["first"][:c], k_obs)
    z0 = model.apply(variables, h[-1], k_prior, method=DramaWorldModel.sample_prior)
    traj = imagine(model, variables, None, carry, z0, h[-1], e.horizon, k_img, actions=data["action"][c:])
    decode = lambda latents: model.apply(variables, latents, method=DramaWorldModel.decode)
    imagined = decode(traj["z"][:-1])
    frames = jnp.concatenate([decode(z), imagined])
    axes = tuple(range(1, imagined.ndim))
    return dict(real=data["obs"], model=frames, mse=jnp.mean((imagined - data["obs"][c:]) ** 2, axes))


# ---- drawing --------------------------------------------------------------------------------------------------


def to_rgb(obs: np.ndarray, low: float, high: float) -> np.ndarray:
    """One observation as an RGB float image in [0, 1]: an RGB image as is, C other channels as distinct colours
    summed (MinAtar), a vector [D] as a 1 x D colour strip scaled from [low, high]."""
    from matplotlib import colormaps

    if obs.ndim == 1:
        scaled = (obs - low) / (high - low) if high > low else np.zeros_like(obs)
        return colormaps["viridis"](np.clip(scaled, 0, 1))[None, :, :3]
    if obs.shape[-1] == 3:
        return np.clip(obs, 0, 1)
    palette = colormaps["tab10"](np.arange(obs.shape[-1]) % 10)[:, :3]
    return np.clip(obs @ palette, 0, 1)


def save_gif(path: Path, real: np.ndarray, model: np.ndarray, context: int, scale: int = 16) -> None:
    """GIF: per step, real (left) | model (right), a white separator, and a bar under the model half that is grey
    while observing (posterior reconstructions) and red while imagining."""
    from PIL import Image

    low, high = float(real.min()), float(real.max())
    frames = []
    for t in range(real.shape[0]):
        left, right = to_rgb(real[t], low, high), to_rgb(model[t], low, high)
        gap = np.ones((left.shape[0], 1, 3))
        row = np.concatenate([left, gap, right], 1)
        bar = np.zeros((1, row.shape[1], 3))
        bar[:, left.shape[1] + 1:] = (0.5, 0.5, 0.5) if t < context else (0.9, 0.1, 0.1)
        image = np.concatenate([row, bar])
        image = np.repeat(np.repeat(image, scale, 0), scale, 1)
        frames.append(Image.fromarray((image * 255).astype(np.uint8)))
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=250, loop=0)


def finish(config: DramaConfig, final_state, out_dir: Path) -> dict:
    """The imagination check for every seed of a seed-stacked final state: eval.json and imagination.gif (seed 0)."""
    setup = build(config)
    run = jax.jit(lambda state, key: imagination_vs_real(setup, config, state, key))
    seeds = final_state.iteration.shape[0]
    results = [jax.device_get(run(of_seed(final_state, i), jax.random.PRNGKey(config.eval.seed))) for i in range(seeds)]
    out_dir.mkdir(parents=True, exist_ok=True)
    save_gif(out_dir / "imagination.gif", results[0]["real"][:, 0], results[0]["model"][:, 0], config.eval.context)
    mse = np.mean([r["mse"] for r in results], 0)
    report = {"env": config.env.name, "backbone": config.model.backbone, "context": config.eval.context,
              "horizon": config.eval.horizon, "imagination_mse": float(mse.mean()),
              "imagination_mse_per_step": mse.tolist(), "per_seed_mse": [float(r["mse"].mean()) for r in results]}
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2))
    print(f"drama eval: imagination MSE over {config.eval.horizon} steps after {config.eval.context}: "
          f"{report['imagination_mse']:.5f}; wrote {out_dir / 'imagination.gif'}")
    return report


# ---- ssmrl evaluate --------------------------------------------------------------------------------------------


def first_episode_returns(setup: Setup, config: DramaConfig, state: DramaState, key, num_envs: int,
                          max_steps: int, greedy: bool):
    """The return of the first episode of each of `num_envs` envs `[N]` (NaN where unfinished after max_steps)."""
    env, env_params = make_env(dataclasses.replace(config.env, num_envs=num_envs))
    model = setup.model
    k_env, key = jax.random.split(key)
    obs, env_state = env.reset(k_env, env_params)
    start = dict(env_state=env_state, obs=obs, first=jnp.ones((num_envs,), bool),
                 carry=model.initial_carry((num_envs,)), h_prev=jnp.zeros((num_envs, state.h_prev.shape[-1])),
                 key=key, total=jnp.zeros(num_envs), returns=jnp.full(num_envs, jnp.nan),
                 done=jnp.zeros(num_envs, bool), steps=jnp.zeros((), jnp.int32))
    def body(loop):
        key, k_act, k_env = jax.random.split(loop["key"], 3)
        obs = setup.from_storage(setup.to_storage(loop["obs"]))
        carry, h, action = act(setup, state.wm_variables, state.behaviour, loop["carry"], loop["h_prev"], obs,
                               loop["first"], k_act, greedy=greedy)
        next_obs, env_state, reward, terminated, truncated, _ = env.step(k_env, loop["env_state"], action, env_params)
        done = terminated | truncated
        total = loop["total"] + reward
        ended = done & ~loop["done"]
        return dict(env_state=env_state, obs=next_obs, first=done, carry=carry, h_prev=h, key=key,
                    total=jnp.where(done, 0.0, total), returns=jnp.where(ended, total, loop["returns"]),
                    done=loop["done"] | done, steps=loop["steps"] + 1)

    loop = jax.lax.while_loop(lambda s: ~s["done"].all() & (s["steps"] < max_steps), body, start)
    return loop["returns"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    return make_parser().parse_args(argv)


def make_parser() -> EvalArgumentParser:
    """The options of `ssmrl evaluate RUN_DIR` for this algo."""
    parser = EvalArgumentParser(prog="ssmrl evaluate RUN_DIR", description="Evaluate a Drama run's checkpoint.")
    parser.add_argument("--episodes", type=positive_count, default=32, metavar="N",
                        help="parallel envs, the first episode of each counts (default: 32)")
    parser.add_argument("--greedy", action="store_true", help="the policy's most likely action (default: sampled)")
    parser.add_argument("--checkpoint", type=int, metavar="STEP", help="checkpoint step (default: the latest)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="evaluation PRNG seed (default: 0)")
    parser.add_argument("--max-steps", type=positive_count, default=100_000, metavar="N",
                        help="stop after N env steps; unfinished episodes are an error (default: 100000)")
    parser.add_argument("--render", action="store_true", help="also write RUN_DIR/imagination.gif (imagined vs real)")
    return parser


def evaluate_run(run, argv: list[str]) -> dict[str, Any]:
    """`ssmrl evaluate RUN_DIR` of a Drama run (`run`: the `ssmrl.runner.RunFolder` the CLI opened): mean +- std
    first-episode return per seed and over seeds; writes eval_returns.json."""
    args = parse_args(argv)
    run_dir, settings, config = run.path, run.settings, run.config
    out = writable_file(run_dir / "eval_returns.json", "the results file")
    state, step = run.restore(args.checkpoint)
    setup = build(config)
    returns_of = jax.jit(
        lambda s, k: first_episode_returns(setup, config, s, k, args.episodes, args.max_steps, args.greedy))
    returns = np.stack([np.asarray(returns_of(of_seed(state, i), jax.random.PRNGKey(args.seed)))
                        for i in range(settings.num_seeds)])
    if np.isnan(returns).any():
        raise ValueError(f"{int(np.isnan(returns).sum())} episodes had not ended after --max-steps {args.max_steps}")
    print(f"{config.env.name} at checkpoint {step}: {args.episodes} episodes per seed")
    for i, seed_returns in enumerate(returns):
        print(f"  seed {i}: return {seed_returns.mean():.4f} +- {seed_returns.std():.4f}")
    print(f"  all seeds: return {returns.mean():.4f} +- {returns.std():.4f}")
    results = {"run_dir": str(run_dir), "env": config.env.name, "checkpoint": step, "greedy": args.greedy,
               "returns": returns.tolist(), "mean": float(returns.mean()), "std": float(returns.std())}
    out.write_text(json.dumps(results, indent=2))
    if args.render:
        finish(config, state, run_dir)
    return results

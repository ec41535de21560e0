"""`ssmrl evaluate RUN_DIR [options]`: returns of a trained PPO policy, and a GIF of one episode.

`evaluate_policy` runs `num_episodes` envs in parallel in the training stack (`ssmrl.agents.env_stack.make_env`) with
the core in step mode, its carry zeroed where an episode starts (as `act` in `ssmrl.agents.ppo`: the reset flag is
"the previous step ended an episode"), and greedy or sampled actions, in one jitted `lax.while_loop` until
every env has finished its first episode: the first return per env `[N]`. For meta-RL configs an env's episode
is a trial, and the result is the return of each inner episode of the first trial `[N, episodes_per_trial]`:
the in-context learning curve. Every env's first episode counts, so short episodes are not over-represented.

Observation normalisation (`env.normalize_obs`) uses the run's final running statistics, frozen, not fresh ones.
The env stack is wrapped in `ssmrl.envs.wrappers.CheckActions`: a policy that sends actions outside the action space
(NaN, out of range; the envs would take them silently) is an error naming the space, not a return.

`--render` replays the evaluation of the first evaluated seed and draws env 0's first episode (the first trial
for meta-RL configs) to RUN_DIR/episode.gif: with gymnax's own `Visualizer` for the gymnax envs it draws
(`GYMNAX_DRAWABLE`; its classic-control envs need pygame), and for the POPGym and state-tracking envs, which have
no renderer, with a generic "observation timeline": frame t shows the observation vectors the agent saw at steps
0..t as heatmap rows (previous action and reward included, as the agent sees them), with the action and reward of
step t.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.figure import Figure

import ssmrl.envs as envs
from ssmrl.agents.env_stack import is_meta
from ssmrl.agents.ppo import PPOConfig, act
from ssmrl.envs.gymnax_adapter import GymnaxAdapter
from ssmrl.envs.meta import SPLITS, is_meta_env
from ssmrl.envs.popgym.suite import POPGYM_ALIASES, POPGYM_ENVS
from ssmrl.envs.state_tracking.suite import STATE_TRACKING_ALIASES, STATE_TRACKING_ENVS
from ssmrl.envs.wrappers import CheckActions, NormalizeObservation, NormalizeState, positive_int
from ssmrl.rl.evaluation import EvalArgumentParser, of_seed, positive_count
from ssmrl.rl.paths import writable_file

DEFAULT_MAX_STEPS = 100_000
GYMNAX_CLASSIC_CONTROL = ("Acrobot-v1", "CartPole-v1", "Pendulum-v1", "MountainCar-v0", "MountainCarContinuous-v0")
GYMNAX_DRAWABLE = (
    *GYMNAX_CLASSIC_CONTROL, "Catch-bsuite", "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar",
    "Seaquest-MinAtar", "SpaceInvaders-MinAtar", "Pong-misc", "PointRobot-misc", "MetaMaze-misc", "FourRooms-misc",
)
"""The envs `gymnax.visualize.Visualizer` draws in gymnax 1.0.1 (classic control through gymnasium and pygame)."""


@chex.dataclass(frozen=True)
class Rollout:
    """Evaluation loop state for N envs. obs `[N, D]`; reset `[N]`: obs starts an episode; returns `[N, K]`: the
    first episode's (trial's inner episodes') returns, NaN until recorded; episodes `[N]`: how many are recorded;
    finished `[N]`: the first episode (trial) is over; steps: env steps taken; invalid: actions outside the action
    space so far (`ssmrl.envs.wrappers.CheckActions`)."""

    env_state: Any
    obs: jax.Array
    reset: jax.Array
    carry: Any
    key: jax.Array
    returns: jax.Array
    episodes: jax.Array
    finished: jax.Array
    steps: jax.Array
    invalid: jax.Array


@dataclasses.dataclass(frozen=True)
class Evaluator:
    """One compiled evaluation program for a config; reuse it across seeds' params.

    start(key, obs_norm) -> Rollout; step(params, rollout) -> (rollout, (env action `[N, ...]`, reward `[N]`));
    run(params, key, obs_norm, max_steps) -> Rollout after the while loop (jitted). `obs_norm`: (mean `[D]`,
    var `[D]`) of the run's observation normaliser when the config normalises observations, else None.
    action_space: the space the policy's actions are checked against (one env's).
    """

    start: Callable[..., Rollout]
    step: Callable[..., tuple[Rollout, tuple[jax.Array, jax.Array]]]
    run: Callable[..., Rollout]
    num_envs: int
    meta: bool
    action_space: Any = None


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; accepted: {list(SPLITS)}")
    return split


def make_evaluator(config: PPOConfig, num_episodes: int, greedy: bool, split: str = "train") -> Evaluator:
    """The evaluation loop of `config`'s policy over `num_episodes` parallel envs (see the module docstring)."""
    num_envs = positive_int("num_episodes", num_episodes)
    env, env_params = config.make_env(num_envs, check_split(split), normalize=False)
    env = CheckActions(env)  # the envs take any action silently: count those outside the action space
    network = config.make_network(env, env_params)
    num_envs = env.num_envs
    normalizer = NormalizeObservation(env, update=False) if config.env.normalize_obs else None
    meta = is_meta(config.env)
    per_trial = env_params.episodes_per_trial if meta else 1
    rows = jnp.arange(num_envs)

    def start(key, obs_norm=None) -> Rollout:
        key, k_env = jax.random.split(key)
        obs, env_state = env.reset(k_env, env_params)
        if normalizer is not None:
            if obs_norm is None:
                raise ValueError("the config normalises observations (env.normalize_obs): pass obs_norm=(mean, var) "
                                 "of the trained run's NormalizeState")
            mean, var = obs_norm
            env_state = NormalizeState(env_state=env_state, mean=mean, var=var, count=jnp.ones((), jnp.float32))
            obs = normalizer.normalize(env_state, obs)
        return Rollout(
            env_state=env_state, obs=obs, reset=jnp.ones((num_envs,), bool),
            carry=network.initialize_carry((num_envs,)), key=key,
            returns=jnp.full((num_envs, per_trial), jnp.nan, jnp.float32), episodes=jnp.zeros((num_envs,), jnp.int32),
            finished=jnp.zeros((num_envs,), bool), steps=jnp.zeros((), jnp.int32), invalid=jnp.zeros((), jnp.int32),
        )

    def step(params, rollout: Rollout):
        key, k_act, k_env = jax.random.split(rollout.key, 3)
        carry, action, _, _ = act(network, params, rollout.carry, rollout.obs, rollout.reset, k_act, greedy)
        env_action = network.head.env_action(action)
        obs, env_state, reward, terminated, truncated, info = (normalizer or env).step(
            k_env, rollout.env_state, env_action, env_params
        )
        done = jnp.logical_or(terminated, truncated)
        record = info["returned_episode"] & ~rollout.finished & (rollout.episodes < per_trial)
        slot = jnp.minimum(rollout.episodes, per_trial - 1)
        recorded = jnp.where(record, info["returned_episode_returns"], rollout.returns[rows, slot])
        rollout = rollout.replace(
            env_state=env_state, obs=obs, reset=done, carry=carry, key=key,
            returns=rollout.returns.at[rows, slot].set(recorded), episodes=rollout.episodes + record,
            finished=rollout.finished | done, steps=rollout.steps + 1,
            invalid=rollout.invalid + jnp.sum(info["invalid_action"], dtype=jnp.int32),
        )
        return rollout, (env_action, reward)

    @jax.jit
    def run(params, key, obs_norm, max_steps):
        def unfinished(rollout):
            return ~rollout.finished.all() & (rollout.steps < max_steps)

        return jax.lax.while_loop(unfinished, lambda r: step(params, r)[0], start(key, obs_norm))

    return Evaluator(start=start, step=step, run=run, num_envs=num_envs, meta=meta,
                     action_space=env.action_space(env_params))


def first_episode_returns(evaluator: Evaluator, params, key, obs_norm=None, max_steps: int = DEFAULT_MAX_STEPS):
    """Float `[N]` (meta-RL: `[N, episodes_per_trial]`); ValueError naming `max_steps` if it cut the loop short,
    or the action space if the policy sent actions outside it (e.g. NaN from NaN parameters)."""
    max_steps = positive_int("max_steps", max_steps)
    rollout = jax.device_get(evaluator.run(params, key, obs_norm, jnp.int32(max_steps)))
    if rollout.invalid:
        raise ValueError(
            f"the policy sent {int(rollout.invalid)} actions outside the env's action space {evaluator.action_space} "
            f"in {int(rollout.steps)} steps of {evaluator.num_envs} envs (NaN or out of range; NaN parameters?)"
        )
    if not rollout.finished.all():
        episode = "trial" if evaluator.meta else "episode"
        raise ValueError(
            f"{int((~rollout.finished).sum())} of {evaluator.num_envs} envs had not finished their first {episode} "
            f"after max_steps={max_steps} steps; raise max_steps (--max-steps)"
        )
    return rollout.returns if evaluator.meta else rollout.returns[:, 0]


def evaluate_policy(
    config: PPOConfig, params, key, num_episodes: int, greedy: bool, split: str = "train", obs_norm=None,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> np.ndarray:
    """The first episode's return of each of `num_episodes` parallel envs, `[num_episodes]`; for meta-RL configs
    the returns of the inner episodes of each env's first trial, `[num_episodes, episodes_per_trial]`."""
    evaluator = make_evaluator(config, num_episodes, greedy, split)
    return first_episode_returns(evaluator, params, key, obs_norm, max_steps)


# ---- rendering -------------------------------------------------------------------------------------------------


def render_kind(config: PPOConfig) -> str:
    """"gymnax" or "timeline": how `--render` draws `config.env`; ValueError naming the envs it can draw."""
    name = config.env.name
    base, _ = envs.make(name, **config.env.kwargs)
    gymnax_name = base.unwrapped.name if isinstance(base, GymnaxAdapter) else None
    if gymnax_name in GYMNAX_DRAWABLE:
        if gymnax_name in GYMNAX_CLASSIC_CONTROL and importlib.util.find_spec("pygame") is None:
            raise ValueError(f"drawing {name!r} uses gymnasium's classic-control renderer, which needs pygame: "
                             "pip install pygame")
        return "gymnax"
    timeline = (POPGYM_ENVS, POPGYM_ALIASES, STATE_TRACKING_ENVS, STATE_TRACKING_ALIASES)
    if any(name in names for names in timeline) or is_meta_env(name):
        return "timeline"
    raise ValueError(
        f"--render cannot draw env {name!r}: it draws gymnax's {list(GYMNAX_DRAWABLE)} (gymnax's visualizer), "
        "the POPGym and state-tracking envs and the registered meta-RL tasks (observation timeline)"
    )


def innermost_state_of_env_zero(state: Any) -> Any:
    """The base env's state of env 0: wrapper states (`.env_state`) peeled, VecEnv's leading axis indexed."""
    while hasattr(state, "env_state"):
        state = state.env_state
    return jax.tree.map(lambda x: x[0], state)


def record_episode(evaluator: Evaluator, params, key, obs_norm=None, max_frames: int = 1000) -> dict[str, Any]:
    """Replays the evaluation and records env 0 until its first episode (trial) ends or `max_frames` steps:
    {"states": [T] base env states before each step, "obs" `[T, D]`, "actions" `[T, ...]`, "rewards" `[T]`}."""
    step = jax.jit(evaluator.step)
    rollout = evaluator.start(key, obs_norm)
    trace: dict[str, list] = {"states": [], "obs": [], "actions": [], "rewards": []}
    while len(trace["rewards"]) < max_frames:
        trace["states"].append(jax.device_get(innermost_state_of_env_zero(rollout.env_state)))
        trace["obs"].append(np.asarray(rollout.obs[0]))
        rollout, (action, reward) = step(params, rollout)
        trace["actions"].append(np.asarray(action[0]))
        trace["rewards"].append(float(reward[0]))
        if bool(rollout.finished[0]):
            break
    return {**trace, "obs": np.stack(trace["obs"]), "actions": np.stack(trace["actions"]),
            "rewards": np.asarray(trace["rewards"])}


def draw_gymnax(config: PPOConfig, episode: dict[str, Any], path: Path) -> None:
    """GIF of the episode's base env states with gymnax's visualizer (title: step and return so far)."""
    from gymnax.visualize import Visualizer  # imports pygame-backed renderers: only when drawing

    for driver in ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER"):  # pygame (classic control) draws off-screen, silently
        os.environ.setdefault(driver, "dummy")
    base, base_params = envs.make(config.env.name, **config.env.kwargs)
    Visualizer(base.unwrapped, base_params, episode["states"], np.cumsum(episode["rewards"])).animate(str(path))


def draw_timeline(title: str, episode: dict[str, Any], path: Path, fps: int = 5) -> None:
    """GIF "observation timeline": frame t shows the observations `[0..t, D]` as heatmap rows (time downwards),
    and the action, reward and return so far of step t."""
    obs, rewards = episode["obs"], episode["rewards"]
    steps, dim = obs.shape
    fig = Figure(figsize=(6, 4.5), dpi=80)
    ax = fig.add_subplot()
    canvas = np.full((steps, dim), np.nan)
    finite = obs[np.isfinite(obs)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = ax.imshow(canvas, aspect="auto", cmap="viridis", vmin=low, vmax=high if high > low else low + 1.0,
                      interpolation="nearest")
    fig.colorbar(image, ax=ax, label="observation value")
    ax.set_xlabel("observation entry (as the agent sees it)")
    ax.set_ylabel("step")
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(path), dpi=80):
        for t in range(steps):
            canvas[t] = obs[t]
            image.set_data(canvas)
            action = np.array2string(episode["actions"][t], precision=2)
            ax.set_title(f"{title}\nstep {t + 1}/{steps}: action {action}, reward {rewards[t]:+.3f}, "
                         f"return {rewards[: t + 1].sum():+.3f}", fontsize=10)
            writer.grab_frame()


def render_episode(
    config: PPOConfig, evaluator: Evaluator, params, key, path: Path, obs_norm=None, max_frames: int = 1000
) -> dict[str, Any]:
    """Draws env 0's first episode of the evaluation to the GIF `path`; returns {"path", "frames", "return"}."""
    kind = render_kind(config)
    episode = record_episode(evaluator, params, key, obs_norm, max_frames)
    if kind == "gymnax":
        draw_gymnax(config, episode, path)
    else:
        draw_timeline(f"{config.env.name} (observation timeline)", episode, path)
    return {"path": str(path), "frames": len(episode["rewards"]), "return": float(episode["rewards"].sum())}


# ---- the `ssmrl evaluate` command -----------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    return make_parser().parse_args(argv)


def make_parser() -> EvalArgumentParser:
    """The options of `ssmrl evaluate RUN_DIR` for this algo."""
    parser = EvalArgumentParser(prog="ssmrl evaluate RUN_DIR", description="Evaluate a PPO run's checkpoint.")
    parser.add_argument("--episodes", type=positive_count, default=100, metavar="N",
                        help="parallel envs, the first episode of each counts (default: 100)")
    parser.add_argument("--sample", action="store_true", help="sample actions (default: greedy)")
    parser.add_argument("--split", choices=SPLITS, help="meta-RL task split (default: test for meta-RL runs)")
    parser.add_argument("--episodes-per-trial", type=positive_count, metavar="K",
                        help="meta-RL: inner episodes per evaluated trial, e.g. past the training horizon "
                             "(default: the config's)")
    parser.add_argument("--checkpoint", type=int, metavar="STEP", help="checkpoint step (default: the latest)")
    parser.add_argument("--seed-index", type=int, metavar="I", help="evaluate training seed I only (default: all)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="evaluation PRNG seed, the same for every training seed (default: 0)")
    parser.add_argument("--max-steps", type=positive_count, default=DEFAULT_MAX_STEPS, metavar="N",
                        help=f"error if the episodes have not ended after N env steps (default: {DEFAULT_MAX_STEPS})")
    parser.add_argument("--render", action="store_true", help="write RUN_DIR/episode.gif: env 0's first episode")
    parser.add_argument("--render-frames", type=positive_count, default=1000, metavar="N",
                        help="draw at most N steps (default: 1000)")
    parser.add_argument("--out", type=Path, metavar="FILE", help="JSON results (default: RUN_DIR/eval.json)")
    return parser


def summarize(returns: np.ndarray) -> tuple[float, float]:
    """(mean, std) over episodes; a meta-RL trial `[..., K]` counts as its mean inner-episode return."""
    per_episode = returns.mean(axis=-1) if returns.ndim == 3 else returns
    return float(per_episode.mean()), float(per_episode.std())


def with_episodes_per_trial(config: PPOConfig, episodes: int) -> PPOConfig:
    """`config` whose meta-RL env has `episodes` inner episodes per trial (the `meta` section's, or the registered
    task's `episodes_per_trial` kwarg); the network does not depend on it."""
    env = config.env
    if env.meta is not None:
        env = dataclasses.replace(env, meta=dataclasses.replace(env.meta, episodes_per_trial=episodes))
    else:
        env = dataclasses.replace(env, kwargs={**env.kwargs, "episodes_per_trial": episodes})
    return dataclasses.replace(config, env=env)


def evaluate_run(run, argv: list[str]) -> dict[str, Any]:
    """`ssmrl evaluate RUN_DIR [options]` of a PPO run (`run`: the `ssmrl.runner.RunFolder` the CLI opened):
    prints mean +- std return and writes the results as JSON."""
    args = parse_args(argv)
    run_dir, settings, config = run.path, run.settings, run.config
    meta = is_meta(config.env)
    if not meta and args.split == "test":
        raise ValueError(f"--split test is for meta-RL runs (held-out tasks); env {config.env.name!r} has no meta")
    split = args.split or ("test" if meta else "train")
    if args.episodes_per_trial is not None:
        if not meta:
            raise ValueError(f"--episodes-per-trial is for meta-RL runs; env {config.env.name!r} has no meta")
        config = with_episodes_per_trial(config, args.episodes_per_trial)
    if args.seed_index is not None and not 0 <= args.seed_index < settings.num_seeds:
        raise ValueError(
            f"--seed-index {args.seed_index} is out of range: the run has seeds 0..{settings.num_seeds - 1}"
        )
    out = writable_file(args.out or run_dir / "eval.json", "--out" if args.out else "the results file (--out)")
    if args.render:
        render_kind(config)  # fail before the restore and the evaluation
        writable_file(run_dir / "episode.gif", "the episode GIF")
    state, step = run.restore(args.checkpoint)
    seed_indices = [args.seed_index] if args.seed_index is not None else list(range(settings.num_seeds))

    def obs_norm(i):
        return (state.env_state.mean[i], state.env_state.var[i]) if config.env.normalize_obs else None

    evaluator = make_evaluator(config, args.episodes, greedy=not args.sample, split=split)
    key = jax.random.PRNGKey(args.seed)
    returns = np.stack([
        first_episode_returns(evaluator, of_seed(state.params, i), key, obs_norm(i), args.max_steps)
        for i in seed_indices
    ])
    mean, std = summarize(returns)
    mode = "sampled" if args.sample else "greedy"
    print(f"{config.env.name} at checkpoint {step}: {args.episodes} episodes per seed, {mode} actions"
          + (f", {split} tasks" if meta else ""))
    per_seed = []
    for i, seed_returns in zip(seed_indices, returns, strict=True):
        seed_mean, seed_std = summarize(seed_returns[None])
        print(f"  seed {i}: return {seed_mean:.4f} +- {seed_std:.4f}")
        per_seed.append({"seed_index": i, "returns": seed_returns.tolist(), "mean": seed_mean, "std": seed_std})
    print(f"  all seeds: return {mean:.4f} +- {std:.4f}")
    results: dict[str, Any] = {
        "run_dir": str(run_dir), "env": config.env.name, "checkpoint": step,
        "settings": {"episodes": args.episodes, "greedy": not args.sample, "split": split, "seed": args.seed,
                     "seed_indices": seed_indices, "max_steps": args.max_steps,
                     "episodes_per_trial": int(returns.shape[-1]) if meta else None},
        "per_seed": per_seed, "mean": mean, "std": std,
    }
    if meta:
        curve = returns.mean(axis=(0, 1))
        print("  mean return per inner episode: " + ", ".join(f"{k + 1}: {r:.4f}" for k, r in enumerate(curve)))
        results["mean_per_episode"] = curve.tolist()
    if args.render:
        i = seed_indices[0]
        render = render_episode(config, evaluator, of_seed(state.params, i), key, run_dir / "episode.gif",
                                obs_norm(i), args.render_frames)
        print(f"  wrote {render['path']}: env 0 of seed {i}, {render['frames']} frames, return {render['return']:.4f}")
        results["render"] = render
    out.write_text(json.dumps(results, indent=2))
    print(f"  wrote {out}")
    return results

"""Drama's cost per training iteration, by stage, and the projected time of a whole run.

    python scripts/bench_drama.py                                   # configs/drama_minatar_breakout.yaml (GPU)
    python scripts/bench_drama.py model.dtype=float32 behaviour.dtype=float32   # the same in float32 (the config: bf16)
    python scripts/bench_drama.py --tiny                            # CPU smoke run: a small model, seconds
    python scripts/bench_drama.py --seeds 3 model.backbone=gru "model.core_kwargs={features: 512}"
    python scripts/bench_drama.py --profile runs/profile            # + the device time of one update by kernel

One iteration of the loop (`ssmrl.worldmodels.train_drama`, default schedule) is one env step in each env, one
world-model step on `model.batch_size` x `model.seq_len` windows and one actor-critic step on
`behaviour.imagine_batch` trajectories imagined for `imagine_horizon` steps. The replay is first filled with
`--fill` steps of random transitions (half the 100k budget by default: the mean fill over a run). Rows, each
jitted alone and timed as the median of `--reps` calls after a warm-up (compile excluded), `--seeds` vmapped:

  world model    DFS-sample windows, observe them, loss, gradient, LaProp update
  imagination    DFS-sample contexts, observe them, imagine the trajectories with the policy
  actor-critic   lambda-returns, actor and critic losses, gradient, update on one imagined batch
  acting         posterior of the frame, policy, one backbone step, env step, replay write
  iteration      the loop's own `update` (all of the above, as training runs it) over
                 `env_steps_per_update` iterations, divided by their number

The stages' sum can exceed the iteration: inside one program XLA overlaps and fuses across stages. The last
column projects a run of `total_steps` env steps at the measured iteration time (the warmup's iterations cost
as much as training ones under vmap; see train_drama's docstring).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from bench_scan import timed
from ssmrl.cli import resolve_config
from ssmrl.profiling import format_table, profile_call
from ssmrl.worldmodels.replay import replay_add
from ssmrl.worldmodels.train_drama import (
    DramaConfig,
    act,
    build,
    imagine_batch,
    make_drama,
    make_init,
    train_world_model,
)

TINY = [  # a CPU smoke run: small model, short windows, few imagined trajectories
    "model.core_kwargs={d_model: 32, n_layers: 1, d_state: 8, head_dim: 16, expand: 2}", "model.hidden=32",
    "model.num_latents=4", "model.num_classes=4", "model.cnn_depth=4", "model.mlp_units=32", "model.head_units=32",
    "model.num_bins=31", "model.batch_size=2", "model.seq_len=16", "behaviour.actor_units=32",
    "behaviour.critic_units=32", "behaviour.layers=1", "behaviour.imagine_batch=8", "behaviour.imagine_context=4",
    "behaviour.imagine_horizon=4", "replay.capacity=2048", "env_steps_per_update=4",
]


def filled(setup, state, fill: int, key):
    """`state` with its replay holding `fill` rows of random transitions (uint8 frames, random actions and
    rewards, episodes of 100 steps)."""
    replay = state.replay
    rows = min(fill, replay.capacity)
    k_obs, k_act, k_rew = jax.random.split(key, 3)
    shape = replay.obs.shape
    obs = jax.random.uniform(k_obs, shape) < 0.1 if setup.is_image else jax.random.normal(k_obs, shape)
    t = jnp.arange(shape[0])[:, None] + jnp.zeros(shape[1], jnp.int32)
    replay = replay.replace(
        obs=setup.to_storage(obs.astype(jnp.float32)),
        action=jax.random.randint(k_act, replay.action.shape, 0, setup.model.num_actions, jnp.int32),
        reward=(jax.random.uniform(k_rew, replay.reward.shape) < 0.05).astype(jnp.float32), terminal=t % 100 == 99,
        first=t % 100 == 0, pos=jnp.int32(rows % replay.capacity), size=jnp.int32(rows))
    return state.replace(replay=replay)


def stage_functions(setup, config: DramaConfig):
    """name -> (state, key) -> outputs, for one seed (vmapped by the caller)."""

    def world_model(s, key):
        return train_world_model(setup, config, s.wm_variables, s.wm_opt, s.replay, key)

    def imagination(s, key):
        return imagine_batch(setup, config, s.wm_variables, s.behaviour, s.replay, key)[1]

    def acting(s, key):
        k_act, k_env = jax.random.split(key)
        carry, h, action = act(setup, s.wm_variables, s.behaviour, s.carry, s.h_prev, s.obs, s.first, k_act)
        step = setup.env.step(k_env, s.env_state, action, setup.env_params)
        replay = replay_add(s.replay, setup.to_storage(s.obs), action, step[2], step[3], s.first)
        return carry, h, replay.size

    return {"world model": world_model, "imagination": imagination, "acting": acting}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides, as for `ssmrl train`")
    parser.add_argument("--config", default="configs/drama_minatar_breakout.yaml")
    parser.add_argument("--seeds", type=int, default=1, help="seeds vmapped in one program")
    parser.add_argument("--fill", type=int, default=50_000, help="replay rows filled before timing")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: a small model (overrides come after)")
    parser.add_argument("--profile", metavar="DIR", help="trace one update into DIR and print its kernels by time")
    args = parser.parse_args()
    _, config, _ = resolve_config(args.config, (TINY if args.tiny else []) + args.overrides)
    setup = build(config)
    fill = min(args.fill, config.replay.capacity)
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    state = jax.jit(jax.vmap(make_init(setup, config)))(keys)
    state = jax.jit(jax.vmap(lambda s, k: filled(setup, s, fill, k)))(state, keys)
    step_keys = jax.random.split(jax.random.PRNGKey(1), args.seeds)

    stages = stage_functions(setup, config)
    rows = {}
    for name, fn in stages.items():
        rows[name] = 1e3 * timed(jax.jit(jax.vmap(fn)), state, step_keys, reps=args.reps)
    traj = jax.jit(jax.vmap(stages["imagination"]))(state, step_keys)
    rows["actor-critic"] = 1e3 * timed(jax.jit(jax.vmap(setup.behaviour.update)), state.behaviour, traj, reps=args.reps)

    algorithm = make_drama(config)
    update = jax.jit(jax.vmap(algorithm.update))
    per_update = 1e3 * timed(lambda s: update(s)[0].iteration, state, reps=max(2, args.reps // 5))
    rows["iteration"] = per_update / config.env_steps_per_update

    m, b = config.model, config.behaviour
    iterations = config.total_steps // config.env.num_envs
    print(f"# Drama, {args.config}{' --tiny' if args.tiny else ''} {' '.join(args.overrides)}")
    print(f"# {jax.devices()[0].device_kind}, jax {jax.__version__}, {args.seeds} seed(s) vmapped; backbone "
          f"{m.backbone} {m.core_kwargs}; world model {m.batch_size} x {m.seq_len}; imagination {b.imagine_batch} x "
          f"{b.imagine_horizon} after {b.imagine_context}; replay filled to {fill}; compute dtype: model {m.dtype}, "
          f"behaviour {b.dtype}")
    print("| stage | ms per iteration |")
    print("|---|---:|")
    for name in ("world model", "imagination", "actor-critic", "acting"):
        print(f"| {name} | {rows[name]:.2f} |")
    print(f"| sum of stages | {sum(rows[n] for n in stages) + rows['actor-critic']:.2f} |")
    print(f"| **iteration (the loop's update)** | **{rows['iteration']:.2f}** |")
    minutes = iterations * rows["iteration"] / 6e4
    print(f"\nprojected: {iterations:,} iterations ({config.total_steps:,} env steps) x {rows['iteration']:.2f} ms = "
          f"{minutes:.1f} min per run of {args.seeds} seed(s) (compile excluded)")
    if args.profile:
        print(f"\n# one update ({config.env_steps_per_update} iterations) traced into {args.profile}, per iteration")
        print(format_table(profile_call(update, (state,), args.profile, config.env_steps_per_update)))


if __name__ == "__main__":
    main()

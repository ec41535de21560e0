"""End-to-end PPO throughput: ssmrl PPO with each core against a reference GRU PPO written the common way.

    python scripts/bench_ppo.py                                   # GPU preset: 1024 and 4096 envs
    python scripts/bench_ppo.py --envs CartPole-v1 --num-envs 64 --cores s5 mlp --updates 2   # CPU smoke run

The reference ("ref-gru") is what single-file recurrent PPO scripts do: a flax `GRUCell` stepped by `lax.scan`
(the carry zeroed where an episode starts) in the rollout and again over the stored rollout in training, with the
same env, PPO settings, widths and losses as ssmrl's PPO. Per row: env steps/s of the steady state (`--updates`
updates after a warm-up one) and the seconds to trace and compile the update ahead of time. `--compile-workers K`
compiles K rows at once in threads (much shorter wall time for the whole table; each row's compile time is then
inflated by the sharing, so quote compile times from a `--compile-workers 1` run); every row is compiled before
any is timed. Rows: `ROWS` (S5 and LRU in float32 and `dtype: bfloat16`, S5 with XLA's scan, one bfloat16 S5
layer, the other cores, the MLP). Prints a markdown table.

`--profile` traces 2 more updates a row (jax.profiler, Perfetto trace) and sums the device time of each kernel
by PPO stage (env step, core scan, policy in the rollout, GAE, training), read from the scopes in its op names.
On GPU, XLA runs most kernels inside command buffers (CUDA graphs), which the trace cannot attribute: profile
with `XLA_FLAGS=--xla_gpu_enable_command_buffer=` (the wall time is then longer, the device time about the same).
`--top-ops N` adds each row's N most expensive ops, named by their jax name stack.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import gzip
import json
import re
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from ssmrl.agents.env_stack import EnvConfig
from ssmrl.agents.ppo import PPOConfig, make_ppo
from ssmrl.rl.returns import gae

S5_KWARGS = {"d_model": 128, "state_size": 128, "n_layers": 2}
ROWS = {  # row name: (registered core, its kwargs); "s5" scans with method "auto" (the fused kernel on a GPU)
    "s5": ("s5", S5_KWARGS),
    "s5-xla": ("s5", {**S5_KWARGS, "scan_method": "associative"}),
    "s5-bf16": ("s5", {**S5_KWARGS, "dtype": "bfloat16"}),
    "s5-1layer-bf16": ("s5", {**S5_KWARGS, "n_layers": 1, "dtype": "bfloat16"}),
    "lru": ("lru", {"d_model": 128, "state_size": 128, "n_layers": 2}),
    "lru-bf16": ("lru", {"d_model": 128, "state_size": 128, "n_layers": 2, "dtype": "bfloat16"}),
    "s4d": ("s4d", {"d_model": 128, "state_size": 64, "n_layers": 2}),
    "mamba": ("mamba", {"d_model": 128, "n_layers": 2}),
    "gru": ("gru", {"features": 128}),
    "lstm": ("lstm", {"features": 128}),
    "mlp": ("mlp", {"features": 128}),
}
PRESETS = {"gpu": dict(num_envs=[1024, 4096], updates=5), "cpu": dict(num_envs=[64], updates=2)}


def ppo_config(env: str, core: str, num_envs: int) -> PPOConfig:
    """The benchmarked PPO settings: 128-step rollouts, 4 epochs of 4 minibatches, width 128."""
    name, core_kwargs = ROWS["gru" if core == "ref-gru" else core]
    return PPOConfig(env=EnvConfig(name=env, num_envs=num_envs), core=name, core_kwargs=core_kwargs,
                     hidden=128, num_steps=128, update_epochs=4, num_minibatches=4, lr=3e-4,
                     gae_lambda=0.95, total_timesteps=num_envs * 128)


class ResetGRUStep(nn.Module):
    """One GRUCell step with the carry zeroed where an episode starts."""

    hidden: int

    @nn.compact
    def __call__(self, carry, inputs):
        x_t, reset_t = inputs
        return nn.GRUCell(self.hidden, name="cell")(jnp.where(reset_t[:, None], 0.0, carry), x_t)


class ReferenceGRU(nn.Module):
    """(carry `[B, H]`, obs `[T, B, D]`, resets `[T, B]`) -> (carry, logits `[T, B, n]`, value `[T, B]`)."""

    num_actions: int
    hidden: int = 128

    @nn.compact
    def __call__(self, carry, obs, resets):
        x = nn.leaky_relu(nn.Dense(self.hidden)(obs))
        scan = nn.scan(ResetGRUStep, variable_broadcast="params", split_rngs={"params": False})
        carry, y = scan(self.hidden)(carry, (x, resets))
        actor = nn.leaky_relu(nn.Dense(self.hidden)(y))
        critic = nn.leaky_relu(nn.Dense(self.hidden)(y))
        return carry, nn.Dense(self.num_actions)(actor), nn.Dense(1)(critic)[..., 0]


def reference_ppo(config: PPOConfig):
    """(init(key) -> state, update(state) -> (state, loss)) of the reference GRU PPO for `config`."""
    env, env_params = config.make_env()
    num_envs, hidden = env.num_envs, config.hidden
    net = ReferenceGRU(env.action_space(env_params).n, hidden)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr, eps=1e-5))

    def init(key):
        k_net, k_env, key = jax.random.split(key, 3)
        obs, env_state = env.reset(k_env, env_params)
        carry, reset = jnp.zeros((num_envs, hidden)), jnp.ones((num_envs,), bool)
        params = net.init(k_net, carry, obs[None], reset[None])
        return params, tx.init(params), env_state, obs, reset, carry, key

    def loss_fn(params, carry, obs, resets, actions, old_logp, old_values, adv, targets):
        _, logits, values = net.apply(params, carry, obs, resets)
        dist = distrax.Categorical(logits=logits)
        ratio = jnp.exp(dist.log_prob(actions) - old_logp)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        clip = jnp.clip(ratio, 1 - config.clip_eps, 1 + config.clip_eps)
        v_clip = old_values + jnp.clip(values - old_values, -config.clip_eps, config.clip_eps)
        v_loss = 0.5 * jnp.maximum((values - targets) ** 2, (v_clip - targets) ** 2).mean()
        return -jnp.minimum(ratio * adv, clip * adv).mean() + config.vf_coef * v_loss

    def update(state):
        params, opt_state, env_state, obs, reset, carry, key = state
        start_carry = carry

        def step(c, _):
            env_state, obs, reset, carry, key = c
            key, k_act, k_env = jax.random.split(key, 3)
            carry, logits, value = net.apply(params, carry, obs[None], reset[None])
            dist = distrax.Categorical(logits=logits[0])
            action = dist.sample(seed=k_act)
            obs2, env_state, reward, term, trunc, _ = env.step(k_env, env_state, action, env_params)
            done = term | trunc
            return (env_state, obs2, done, carry, key), (obs, reset, action, dist.log_prob(action), value[0], reward,
                                                          done)

        (env_state, obs, reset, carry, key), traj = jax.lax.scan(step, (env_state, obs, reset, carry, key), None,
                                                                 config.num_steps)
        t_obs, t_reset, t_act, t_logp, t_val, t_rew, t_done = traj
        _, _, last = net.apply(params, carry, obs[None], reset[None])
        adv, targets = gae(t_rew, t_val, t_done, last[0], config.gamma, config.gae_lambda)

        def epoch(c, k):
            order = jax.random.permutation(k, num_envs).reshape(config.num_minibatches, -1)

            def minibatch(c, idx):
                params, opt_state = c
                batch = jax.tree.map(lambda x: x[:, idx], (t_obs, t_reset, t_act, t_logp, t_val, adv, targets))
                loss, grads = jax.value_and_grad(loss_fn)(params, start_carry[idx], *batch)
                updates, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, updates), opt_state), loss

            return jax.lax.scan(minibatch, c, order)

        key, k_ep = jax.random.split(key)
        (params, opt_state), losses = jax.lax.scan(epoch, (params, opt_state),
                                                   jax.random.split(k_ep, config.update_epochs))
        return (params, opt_state, env_state, obs, reset, carry, key), losses.mean()

    return init, update


def build(env: str, num_envs: int, core: str):
    """(init, update, env steps per update) of one table row."""
    config = ppo_config(env, core, num_envs)
    if core == "ref-gru":
        init, update = reference_ppo(config)
    else:
        algorithm = make_ppo(config)
        init, update = algorithm.init, algorithm.update
    return init, update, config.steps_per_update


def compile_update(init, update):
    """(compiled update, seconds to trace and compile it): ahead of time, against the state's shapes."""
    start = time.perf_counter()
    state = jax.eval_shape(init, jax.random.PRNGKey(0))
    compiled = jax.jit(update).lower(state).compile()
    return compiled, time.perf_counter() - start


def steady_sps(init, compiled, updates: int, steps_per_update: int):
    """(env steps/s over `updates` updates after one warm-up update, the state they end in)."""
    state = jax.jit(init)(jax.random.PRNGKey(0))
    state, out = compiled(state)
    jax.block_until_ready(out)
    start = time.perf_counter()
    for _ in range(updates):
        state, out = compiled(state)
    jax.block_until_ready(out)
    return updates * steps_per_update / (time.perf_counter() - start), state


# Profile stages: the first of these scopes (set in agents/ppo.py and ssm/scan.py) found in an op's name.
STAGES = (("env_step", "env step"), ("reset_scan", "core scan"), ("rollout", "policy (rollout)"),
          ("advantages", "GAE"), ("train", "training"))
COMMAND_BUFFERS = "command buffers"  # CUDA graphs: their kernels are not attributed to HLO ops
_INSTRUCTION = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = ")
_COMPUTATION = re.compile(r"\s*(?:ENTRY )?%?([\w.\-]+) .*\{$")


def op_names(hlo_text: str) -> dict[str, str]:
    """{HLO instruction: its `op_name` metadata (jax's name stack)} of a compiled module's text; an instruction
    without one (a fusion) takes the first op_name of the computation it calls."""
    own, first_in, calls, current = {}, {}, {}, None
    for line in hlo_text.splitlines():
        instruction = _INSTRUCTION.match(line)
        if instruction is None:
            computation = _COMPUTATION.match(line)
            current = computation.group(1) if computation else current
            continue
        name = instruction.group(1)
        op_name = re.search(r'op_name="([^"]*)"', line)
        if op_name:
            own[name] = op_name.group(1)
            first_in.setdefault(current, op_name.group(1))
        called = re.search(r"calls=%?([\w.\-]+)", line)
        if called:
            calls[name] = called.group(1)
    return {**{name: first_in.get(target, "") for name, target in calls.items()}, **own}


def device_op_times(trace_dir: str) -> tuple[dict[str, float], list[str]]:
    """({HLO op: microseconds on the device}, the device lines used) from the Perfetto trace in `trace_dir`.

    Device events are those of processes named like a GPU; when there is none (CPU), every event with an op."""
    path = max(Path(trace_dir).rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
    events = json.loads(gzip.open(path).read())
    events = events["traceEvents"] if isinstance(events, dict) else events
    process = {e["pid"]: e["args"]["name"] for e in events if e.get("ph") == "M" and e["name"] == "process_name"}
    thread = {(e["pid"], e["tid"]): e["args"]["name"] for e in events
              if e.get("ph") == "M" and e["name"] == "thread_name"}
    gpus = {pid for pid, name in process.items() if "GPU" in name}
    ops = [e for e in events if e.get("ph") == "X" and "hlo_op" in e.get("args", {})
           and (not gpus or e["pid"] in gpus)]
    streams = {key for key, name in thread.items() if key[0] in gpus and "Stream" in name}
    if streams:  # kernels on CUDA streams only: the derived "XLA Ops" lines would count them twice
        ops = [e for e in ops if (e["pid"], e["tid"]) in streams]
    times = collections.defaultdict(float)
    for event in ops:
        times[event["args"]["hlo_op"]] += float(event["dur"])
    lines = sorted({f"{process.get(e['pid'], e['pid'])}: {thread.get((e['pid'], e['tid']), e['tid'])}" for e in ops})
    return dict(times), lines


def profile_update(compiled, state, updates: int, trace_dir: str):
    """({stage: ms on the device per update}, wall ms per update, device lines, [(ms per update, stage, op name) of
    every op, most expensive first]) over `updates` updates from the warm `state`, traced into `trace_dir` (which
    also gets the compiled module's text, `module.hlo.txt`)."""
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        start = time.perf_counter()
        for _ in range(updates):
            state, out = compiled(state)
        jax.block_until_ready(out)
        wall = time.perf_counter() - start
    times, lines = device_op_times(trace_dir)
    text = compiled.as_text()
    Path(trace_dir, "module.hlo.txt").write_text(text)
    names = op_names(text)
    stages, ops = collections.defaultdict(float), []
    for op, micros in times.items():
        name = names.get(op, "")
        stage = next((label for scope, label in STAGES if scope in name), "other")
        stage = COMMAND_BUFFERS if op.startswith("command_buffer") else stage
        stages[stage] += micros / 1e3 / updates
        ops.append((micros / 1e3 / updates, stage, name or op))
    return dict(stages), wall * 1e3 / updates, lines, sorted(ops, reverse=True)


def main() -> None:
    backend = jax.default_backend()
    preset = PRESETS["cpu" if backend == "cpu" else "gpu"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", nargs="+", default=["RepeatPrevious-Easy", "CartPole-v1"])
    parser.add_argument("--cores", nargs="+", default=["ref-gru", *ROWS], choices=["ref-gru", *ROWS])
    parser.add_argument("--num-envs", nargs="+", type=int, default=preset["num_envs"])
    parser.add_argument("--updates", type=int, default=preset["updates"], help="timed updates after the first")
    parser.add_argument("--compile-workers", type=int, default=1,
                        help="rows compiled at once (threads); compile times are then inflated by the sharing")
    parser.add_argument("--profile", action="store_true",
                        help="also trace 2 updates a row and print where the device time goes, by stage")
    parser.add_argument("--profile-dir", help="keep the traces and compiled modules here (default: discarded)")
    parser.add_argument("--top-ops", type=int, default=0, metavar="N",
                        help="with --profile, also list each row's N most expensive ops (jax name stack)")
    args = parser.parse_args()
    rows = [(env, n, core) for env in args.envs for n in args.num_envs for core in args.cores]
    print(f"# PPO end to end, {jax.devices()[0].device_kind}, jax {jax.__version__}, "
          f"{datetime.date.today().isoformat()}; 128 steps x 4 epochs x 4 minibatches, width 128; "
          f"{args.compile_workers} row(s) compiled at once")

    def prepare(row):
        try:
            init, update, steps = build(*row)
            return (init, steps, *compile_update(init, update))
        except Exception as error:  # a failed row (e.g. a compile error) must not end the table
            return error

    profiles = []
    with ThreadPoolExecutor(args.compile_workers) as pool:
        prepared = list(pool.map(prepare, rows))  # all compiled before any is timed: no compile beside a timing
        print("| env | num_envs | core | env steps/s | compile s |\n|---|---:|---|---:|---:|", flush=True)
        for (env, num_envs, core), ready in zip(rows, prepared, strict=True):
            try:
                if isinstance(ready, Exception):
                    raise ready
                init, steps, compiled, compile_s = ready
                sps, state = steady_sps(init, compiled, args.updates, steps)
                print(f"| {env} | {num_envs} | {core} | {sps:,.0f} | {compile_s:.1f} |", flush=True)
                if args.profile:
                    with tempfile.TemporaryDirectory() as scratch:
                        trace_dir = Path(args.profile_dir or scratch, f"{env}-{num_envs}-{core}")
                        profiles.append(((env, num_envs, core), *profile_update(compiled, state, 2, str(trace_dir))))
            except Exception as error:  # e.g. out of memory
                message = f"{type(error).__name__}: {str(error).splitlines()[0][:100]}" if str(error) else error
                print(f"| {env} | {num_envs} | {core} | {message} | |", flush=True)
    if profiles:
        print_profiles(profiles, args.top_ops)


def print_profiles(profiles, top_ops: int = 0) -> None:
    """Markdown tables: per row, ms per update on the device by stage, and device-busy time against wall time;
    then, with `top_ops`, each row's most expensive ops."""
    labels = [label for _, label in STAGES] + ["other"]
    if any(COMMAND_BUFFERS in stages for _, stages, _, _, _ in profiles):
        labels.append(COMMAND_BUFFERS)
        print("\n# XLA ran kernels inside command buffers (CUDA graphs), which the trace does not attribute to ops: "
              "rerun with XLA_FLAGS=--xla_gpu_enable_command_buffer= to see the stages (slower wall time)")
    print(f"\n# device time per update by stage, ms (device lines: {profiles[0][3]})")
    print(f"| env | num_envs | core | {' | '.join(labels)} | device busy | wall |")
    print(f"|---|---:|---|{'---:|' * (len(labels) + 2)}")
    for (env, num_envs, core), stages, wall, _, _ in profiles:
        cells = " | ".join(f"{stages.get(label, 0.0):.1f}" for label in labels)
        print(f"| {env} | {num_envs} | {core} | {cells} | {sum(stages.values()):.1f} | {wall:.1f} |", flush=True)
    for (env, num_envs, core), _, _, _, ops in profiles if top_ops else ():
        print(f"\n# {env}, {num_envs} envs, {core}: the {top_ops} most expensive ops, ms per update\n"
              "| ms | stage | op (name stack) |\n|---:|---|---|")
        for ms, stage, name in ops[:top_ops]:
            print(f"| {ms:.2f} | {stage} | {name.replace('while/body/closed_call/', '')[-150:]} |")


if __name__ == "__main__":
    main()

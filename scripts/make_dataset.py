"""D4RL-style offline datasets of a brax env (or any continuous-action env) from PPO policies, made offline.

    python scripts/make_dataset.py --env brax/hopper --steps 1000000 --out data/offline --seed 0 [--ppo-steps 50000000]

Trains PPO with this library (`ssmrl.agents.ppo`, memoryless MLP actor-critic, observation normalisation; our
hyperparameters, `PPO_DEFAULTS`, overridable with `--ppo-config FILE` and `--set key=value`), saving a policy
snapshot `--checkpoints` times along the way (`<out>/<env>-policies/`; `--policies DIR` loads them instead of
training). Each snapshot's return is measured on `--eval-episodes` full episodes with sampled actions. Then, following
D4RL (Fu et al. 2020), with our policies in place of D4RL's SAC agents:

- random: `--steps` steps of the randomly initialised policy (snapshot 0);
- expert: `--steps` steps of the best snapshot;
- medium: `--steps` steps of the snapshot whose return is closest to a third of the expert's (before the expert);
- medium-replay: what training saw until the medium snapshot, replayed from the snapshots: snapshot i acts for the
  share of steps PPO took with it (equal shares, PPO's chunks being equal), in total the env steps PPO took until
  medium but at most `--steps`. PPO's own rollouts are not recorded (that would need a hook in `ssmrl.agents.ppo`); this
  replays the saved snapshots instead, and is capped because PPO needs far more env steps than D4RL's SAC;
- medium-expert: medium followed by expert (D4RL's concatenation).

Every file `<out>/<env>-<kind>.npz` (format: `ssmrl.agents.offline_data`) holds the random and expert reference returns
(the random and expert snapshots' measured returns) for the normalised score. Data are collected with sampled actions
in `--collect-envs` parallel envs; each env's stream is cut into episodes at terminals and time limits, and the end of
a stream counts as a timeout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

import ssmrl.envs as envs
from ssmrl.agents.offline_data import D4RL_KEYS, DATASET_KINDS, write_dataset
from ssmrl.agents.ppo import PPOConfig, act, make_ppo
from ssmrl.config import apply_overrides, config_to_dict, load_yaml, parse_config
from ssmrl.envs.wrappers import NormalizeObservation, NormalizeState

PPO_DEFAULTS = {
    "env": {"num_envs": 2048, "prev_action_reward": False, "normalize_obs": True},
    "core": "mlp", "core_kwargs": {"features": 256, "n_layers": 2, "activation": "silu"}, "hidden": 256,
    "activation": "silu", "continuous": "tanh_gaussian", "num_steps": 32, "update_epochs": 4, "num_minibatches": 32,
    "lr": 3e-4, "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 1e-3, "vf_coef": 0.5, "max_grad_norm": 1.0,
}
"""PPO settings for brax locomotion (ours, in the spirit of brax's PPO examples; not tuned per env)."""


@dataclasses.dataclass(frozen=True)
class Policy:
    """A PPO snapshot: params, its observation normaliser (mean, var; None when PPO did not normalise), env steps
    PPO had taken, and the measured mean return (NaN until measured)."""

    params: Any
    obs_mean: np.ndarray | None
    obs_var: np.ndarray | None
    env_steps: int
    eval_return: float = float("nan")


def ppo_config(env: str, env_kwargs: dict, ppo_steps: int, config_file: str | None, overrides: list[str]) -> PPOConfig:
    """PPO_DEFAULTS, then the `ppo:` section of `config_file`, then `overrides`, for `env` and `ppo_steps` steps."""
    data = json.loads(json.dumps(PPO_DEFAULTS))
    if config_file:
        section = load_yaml(config_file).get("ppo") or {}
        data = {**data, **section, "env": {**data["env"], **(section.get("env") or {})}}
    data = apply_overrides(data, overrides)
    data["env"] = {**data["env"], "name": env, "kwargs": env_kwargs}
    data["total_timesteps"] = ppo_steps
    config = parse_config(PPOConfig, data, where="ppo")
    if config.env.prev_action_reward or config.env.meta is not None:
        raise ValueError("the PPO policy must see the raw observation only: set env.prev_action_reward=false and no "
                         "env.meta")
    return config


def snapshot(state, env_steps: int, normalize: bool) -> Policy:
    """The `Policy` of a PPO state (its params and, when normalising, the running observation statistics)."""
    if not normalize:
        return Policy(params=jax.device_get(state.params), obs_mean=None, obs_var=None, env_steps=env_steps)
    stats = state.env_state
    return Policy(params=jax.device_get(state.params), obs_mean=np.asarray(stats.mean), obs_var=np.asarray(stats.var),
                  env_steps=env_steps)


def train_policies(config: PPOConfig, key, checkpoints: int) -> list[Policy]:
    """Train PPO for config.total_timesteps in `checkpoints` equal chunks; snapshots before and after each chunk."""
    algorithm = make_ppo(config)
    if checkpoints < 1 or algorithm.num_updates < checkpoints:
        raise ValueError(f"--checkpoints must be between 1 and the {algorithm.num_updates} PPO updates, got "
                         f"{checkpoints}; raise --ppo-steps or lower --checkpoints")
    chunk = algorithm.num_updates // checkpoints
    run_chunk = jax.jit(lambda s: jax.lax.scan(lambda c, _: algorithm.update(c), s, None, chunk))
    state = jax.jit(algorithm.init)(key)
    policies = [snapshot(state, 0, config.env.normalize_obs)]
    for i in range(checkpoints):
        state, metrics = run_chunk(state)
        steps = (i + 1) * chunk * algorithm.steps_per_update
        policies.append(snapshot(state, steps, config.env.normalize_obs))
        print(f"ppo: {steps} env steps, training episode return {float(metrics['episode_return'][-1]):.1f}",
              flush=True)
    return policies


def save_policies(policies: list[Policy], directory: Path) -> None:
    """policy_<i>.msgpack files and index.json (env steps and measured returns)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, policy in enumerate(policies):
        blob = {"params": policy.params, "obs_mean": policy.obs_mean, "obs_var": policy.obs_var}
        (directory / f"policy_{i:03d}.msgpack").write_bytes(
            flax.serialization.msgpack_serialize({k: v for k, v in blob.items() if v is not None}))
    index = [{"file": f"policy_{i:03d}.msgpack", "env_steps": p.env_steps, "eval_return": p.eval_return}
             for i, p in enumerate(policies)]
    (directory / "index.json").write_text(json.dumps(index, indent=2))


def load_policies(directory: Path) -> list[Policy]:
    """The snapshots `save_policies` wrote (returns are measured again)."""
    index_file = directory / "index.json"
    if not index_file.is_file():
        raise FileNotFoundError(f"{str(directory)!r} holds no index.json of saved policies")
    policies = []
    for entry in json.loads(index_file.read_text()):
        blob = flax.serialization.msgpack_restore((directory / entry["file"]).read_bytes())
        policies.append(Policy(params=blob["params"], obs_mean=blob.get("obs_mean"), obs_var=blob.get("obs_var"),
                               env_steps=int(entry["env_steps"])))
    return policies


class Collector:
    """Rolls out PPO snapshots in the env without wrappers (raw observations recorded, the snapshot's normaliser
    applied for the policy only). `run(policy, key, num_envs, steps)` -> rows of D4RL keys, env after env."""

    def __init__(self, config: PPOConfig):
        self.env, self.env_params = envs.make(config.env.name, **config.env.kwargs)
        self.network = config.make_network(self.env, self.env_params)
        self.normalizer = NormalizeObservation(self.env)
        self.programs: dict[tuple[int, int], Any] = {}

    def program(self, num_envs: int, steps: int):
        """jit((params, mean, var, key, normalize) -> rows `[steps, num_envs, ...]`), compiled once per size."""
        if (num_envs, steps) in self.programs:
            return self.programs[num_envs, steps]
        env, env_params, network = self.env, self.env_params, self.network

        def rollout(params, mean, var, key, normalize):
            k_reset, k_steps = jax.random.split(key)
            obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_envs), env_params)
            stats = NormalizeState(env_state=None, mean=mean, var=var, count=jnp.ones(()))

            def step(carry, key):
                state, obs, reset = carry
                k_act, k_env = jax.random.split(key)
                seen = jnp.where(normalize, self.normalizer.normalize(stats, obs), obs)
                _, action, _, _ = act(network, params, network.initialize_carry((num_envs,)), seen, reset, k_act)
                env_action = network.head.env_action(action)
                next_obs, state, reward, terminated, truncated, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                    jax.random.split(k_env, num_envs), state, env_action, env_params)
                row = {"observations": obs, "actions": env_action, "rewards": reward, "terminals": terminated,
                       "timeouts": truncated & ~terminated}
                return (state, next_obs, terminated | truncated), row

            start = (state, obs, jnp.ones((num_envs,), bool))
            return jax.lax.scan(step, start, jax.random.split(k_steps, steps))[1]

        self.programs[num_envs, steps] = jax.jit(rollout)
        return self.programs[num_envs, steps]

    def run(self, policy: Policy, key, num_envs: int, steps: int) -> dict[str, np.ndarray]:
        dim = self.env.observation_space(self.env_params).shape[0]
        normalize = policy.obs_mean is not None
        mean = policy.obs_mean if normalize else np.zeros(dim, np.float32)
        var = policy.obs_var if normalize else np.ones(dim, np.float32)
        rows = self.program(num_envs, steps)(policy.params, mean, var, key, normalize)
        rows = {k: np.array(v) for k, v in rows.items()}
        rows["timeouts"][-1] |= ~rows["terminals"][-1]  # the end of each env's stream ends its episode
        return {k: np.swapaxes(v, 0, 1).reshape((num_envs * steps,) + v.shape[2:]) for k, v in rows.items()}


def first_episode_returns(rows: dict[str, np.ndarray], num_envs: int) -> np.ndarray:
    """The return of each env's first episode `[num_envs]` (rows from `Collector.run`)."""
    rewards = rows["rewards"].reshape(num_envs, -1)
    done = (rows["terminals"] | rows["timeouts"]).reshape(num_envs, -1)
    first_end = np.argmax(done, axis=1)
    return np.array([rewards[i, : first_end[i] + 1].sum() for i in range(num_envs)])


def concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in D4RL_KEYS}


def choose(policies: list[Policy]) -> tuple[int, int]:
    """(expert index: best measured return, medium index: the earlier snapshot closest to a third of it)."""
    returns = np.array([p.eval_return for p in policies])
    expert = int(np.argmax(returns))
    candidates = returns[: max(expert, 1)]
    return expert, int(np.argmin(np.abs(candidates - returns[expert] / 3.0)))


def make_datasets(args) -> list[Path]:
    """Train or load the policies, measure them, collect and write the datasets `args.kinds`; returns the paths."""
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(DATASET_KINDS))
    if unknown or not kinds:
        raise ValueError(f"--kinds {unknown or args.kinds!r} not known; accepted: {','.join(DATASET_KINDS)}")
    for name in ("steps", "collect_envs", "eval_episodes"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    env_kwargs = json.loads(args.env_kwargs)
    config = ppo_config(args.env, env_kwargs, args.ppo_steps, args.ppo_config, args.set)
    out, prefix = Path(args.out), args.env.replace("/", "-")
    key_train, key_eval, key_data = jax.random.split(jax.random.PRNGKey(args.seed), 3)
    if args.policies:
        policies = load_policies(Path(args.policies))
    else:
        policies = train_policies(config, key_train, args.checkpoints)
    collector = Collector(config)
    max_steps = int(collector.env_params.max_steps_in_episode)
    for i, key in enumerate(jax.random.split(key_eval, len(policies))):
        rows = collector.run(policies[i], key, args.eval_episodes, max_steps)
        policies[i] = dataclasses.replace(policies[i], eval_return=float(first_episode_returns(rows,
                                                                                              args.eval_episodes).mean()))
    save_policies(policies, out / f"{prefix}-policies")
    expert, medium = choose(policies)
    ref_min, ref_max = policies[0].eval_return, policies[expert].eval_return
    print(f"policies: random {ref_min:.1f}, medium #{medium} {policies[medium].eval_return:.1f}, expert #{expert} "
          f"{ref_max:.1f}", flush=True)
    if not ref_max > ref_min:
        print("warning: no snapshot beats the random policy (train longer: --ppo-steps); normalised scores of these "
              "datasets are undefined", flush=True)
    per_env = max(args.steps // args.collect_envs, 1)
    keys = dict(zip(("random", "medium", "expert", "medium-replay"), jax.random.split(key_data, 4), strict=True))

    def rollout(kind: str, index: int) -> dict[str, np.ndarray]:
        return collector.run(policies[index], keys[kind], args.collect_envs, per_env)

    data: dict[str, dict[str, np.ndarray]] = {}
    for kind, index in (("random", 0), ("medium", medium), ("expert", expert)):
        if kind in kinds or (kind != "random" and "medium-expert" in kinds):
            data[kind] = rollout(kind, index)
    if "medium-replay" in kinds:
        replayed = list(range(max(medium, 1)))
        total = min(policies[medium].env_steps or args.steps, args.steps)
        share = max(total // (len(replayed) * args.collect_envs), 1)
        replay_keys = jax.random.split(keys["medium-replay"], len(replayed))
        data["medium-replay"] = concat([collector.run(policies[i], k, args.collect_envs, share)
                                        for i, k in zip(replayed, replay_keys, strict=True)])
    if "medium-expert" in kinds:
        data["medium-expert"] = concat([data["medium"], data["expert"]])
    sources = {"random": [0], "medium": [medium], "expert": [expert], "medium-expert": [medium, expert],
               "medium-replay": list(range(max(medium, 1)))}
    paths = []
    for kind in kinds:
        meta = {"env": args.env, "env_kwargs": env_kwargs, "kind": kind, "seed": args.seed,
                "ref_min_score": ref_min, "ref_max_score": ref_max, "generator": "scripts/make_dataset.py",
                "policies": [{"index": i, "env_steps": policies[i].env_steps, "eval_return": policies[i].eval_return}
                             for i in sources[kind]],
                "ppo": config_to_dict(config)}
        paths.append(write_dataset(out / f"{prefix}-{kind}.npz", data[kind], meta))
        print(f"wrote {paths[-1]}: {len(data[kind]['rewards'])} steps", flush=True)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True, help="registered env with a Box action space, e.g. brax/hopper")
    parser.add_argument("--steps", type=int, default=1_000_000, help="steps per dataset (medium-expert: twice)")
    parser.add_argument("--out", default="data/offline", help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ppo-steps", type=int, default=50_000_000, help="PPO training env steps")
    parser.add_argument("--checkpoints", type=int, default=20, help="policy snapshots taken during PPO training")
    parser.add_argument("--policies", default="", help="load snapshots saved by an earlier run instead of training")
    parser.add_argument("--kinds", default=",".join(DATASET_KINDS), help="datasets to write, comma-separated")
    parser.add_argument("--collect-envs", type=int, default=1000, help="parallel envs while collecting")
    parser.add_argument("--eval-episodes", type=int, default=100, help="episodes measuring each snapshot")
    parser.add_argument("--env-kwargs", default="{}", help="JSON env constructor overrides")
    parser.add_argument("--ppo-config", default=None, help="YAML file whose ppo: section overrides PPO_DEFAULTS")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="PPO override, e.g. lr=1e-4")
    make_datasets(parser.parse_args(argv))


if __name__ == "__main__":
    main()

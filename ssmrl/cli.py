"""`ssmrl train CONFIG [key=value ...]` and `ssmrl evaluate RUN_DIR [options]`.

A config file's top level sets the run (`algo`, `out_dir`, `seed`, `num_seeds`, `num_devices`, `mesh`, ...; see
`ssmrl.runner.RunSettings`) and the section named after the algo sets the trainer (e.g. `ppo:` -> `PPOConfig`).
Overrides are dotted keys with YAML values; keys of the trainer's section may drop the section name
(`core=gru` is `ppo.core=gru`).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ssmrl.algos import ALGOS, algo_spec
from ssmrl.config import apply_overrides, config_to_dict, load_yaml, parse_config
from ssmrl.distributed import initialize_from_env
from ssmrl.runner import RunFolder, RunSettings, TrainingDiverged, run

RUN_KEYS = tuple(f.name for f in dataclasses.fields(RunSettings))


def route_overrides(overrides: list[str], algo: str) -> list[str]:
    """Prefixes overrides whose first key is neither a run key nor an algo section with the algo's section."""
    routed = []
    for override in overrides:
        first = override.partition("=")[0].split(".")[0].strip()
        routed.append(override if first in RUN_KEYS or first in ALGOS else f"{algo}.{override}")
    return routed


def resolve_config(path: str, overrides: list[str]) -> tuple[RunSettings, Any, dict]:
    """(run settings, trainer config, the resolved config as plain data) from a file and overrides."""
    data = load_yaml(path)
    algo_overrides = [o for o in overrides if o.partition("=")[0].strip() == "algo"]
    algo = apply_overrides(data, algo_overrides).get("algo", RunSettings.algo)
    spec = algo_spec(algo)
    data = apply_overrides(data, route_overrides(overrides, algo))
    section = data.pop(algo, None) or {}
    settings = parse_config(RunSettings, data)
    if not settings.out_dir:
        settings = dataclasses.replace(settings, out_dir=str(Path("runs") / Path(path).stem))
    config = parse_config(spec.load("config"), section, where=algo)
    resolved = {**config_to_dict(settings), algo: config_to_dict(config)}
    return settings, config, resolved


def train(path: str, overrides: list[str]) -> tuple[Any, dict[str, np.ndarray]]:
    """Runs `ssmrl train`; returns (stacked final state, metrics of this invocation)."""
    settings, config, resolved = resolve_config(path, overrides)
    spec = algo_spec(settings.algo)
    algorithm = spec.load("make")(config)
    print(
        f"ssmrl: {settings.algo} for {algorithm.num_updates} updates x {algorithm.steps_per_update} steps, "
        f"{settings.num_seeds} seed(s), writing to {settings.out_dir}",
        file=sys.stderr,
    )
    state, metrics = run(algorithm, settings, resolved, title=f"{settings.algo}: {Path(path).stem}")
    finish = spec.load("finish")
    if finish is not None:
        finish(config, state, Path(settings.out_dir))
    if "episode_return" in metrics:
        final = metrics["episode_return"][-1]
        print(f"final episode_return over seeds: {final.mean():.4f} +- {final.std():.4f}", file=sys.stderr)
    return state, metrics


def evaluate(run_dir: str, argv: list[str]) -> None:
    """Runs `ssmrl evaluate`: the run's trainer evaluates its checkpoint."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {run_dir!r} does not exist (give the out_dir of `ssmrl train`)")
    settings, config, _ = resolve_config(str(path / "config.yaml"), [])
    spec = algo_spec(settings.algo)
    entry = spec.load("evaluate")
    if entry is None:
        raise ValueError(f"algo {settings.algo!r} has no evaluate command; algos with one: "
                         f"{sorted(name for name, spec in ALGOS.items() if spec.evaluate)}")
    entry(RunFolder(path, settings, config, spec.load("make")(config)), argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ssmrl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train from a YAML config")
    train_parser.add_argument("config", help="YAML config file, e.g. configs/ppo_s5_repeat_previous.yaml")
    train_parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. core=gru lr=1e-4")
    eval_parser = commands.add_parser("evaluate", help="evaluate a run's checkpoint", add_help=False)
    eval_parser.add_argument("run_dir", help="a run's output folder (holds config.yaml and checkpoints/)")
    args, rest = parser.parse_known_args(argv)
    try:
        initialize_from_env()
        if args.command == "train":
            if rest:
                parser.error(f"unrecognised arguments {rest}; overrides are key=value")
            train(args.config, args.overrides)
        else:
            evaluate(args.run_dir, rest)
    except (ValueError, FileNotFoundError, FileExistsError, TrainingDiverged) as err:
        print(f"ssmrl: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

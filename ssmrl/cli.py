"""`ssmrl train CONFIG [key=value ...]` and `ssmrl evaluate RUN_DIR [options]`.

A config file's top level sets the run (`algo`, `out_dir`, `seed`, `num_seeds`, `num_devices`, `mesh`, ...; see
`ssmrl.runner.RunSettings`) and the section named after the algo sets the trainer (e.g. `ppo:` -> `PPOConfig`).
Overrides are dotted keys with YAML values; keys of the trainer's section may drop the section name
(`core=gru` is `ppo.core=gru`).

Exit codes: 0 done, 2 a user error (bad config or arguments, out_dir in use, not empty or not writable; one line,
no traceback), 1 a failure (training diverged, a full disk, other I/O errors), 130 stopped by Ctrl-C (the last
checkpoint is kept and the `resume=true` command printed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ssmrl.algos import ALGOS, algo_spec
from ssmrl.config import apply_overrides, config_to_dict, load_yaml, parse_config
from ssmrl.distributed import initialize_from_env, is_primary
from ssmrl.folder import claim_run_folder, run_folder_lock
from ssmrl.runner import RunFolder, RunSettings, TrainingDiverged, run

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)
"""Errors that mean the command or config is wrong: one line and exit code 2."""

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
    """Runs `ssmrl train`; returns (stacked final state, metrics of this invocation). The run folder is locked and
    checked before anything is compiled; a Ctrl-C raises KeyboardInterrupt whose message holds the resume command."""
    settings, config, resolved = resolve_config(path, overrides)
    spec = algo_spec(settings.algo)
    out_dir = Path(settings.out_dir)
    with run_folder_lock(out_dir) if is_primary() else contextlib.nullcontext():
        try:
            if is_primary():
                claim_run_folder(out_dir, settings.resume, settings.overwrite)
            algorithm = spec.load("make")(config)
            print(
                f"ssmrl: {settings.algo} for {algorithm.num_updates} updates x {algorithm.steps_per_update} steps, "
                f"{settings.num_seeds} seed(s), writing to {settings.out_dir}",
                file=sys.stderr,
            )
            state, metrics = run(algorithm, settings, resolved, title=f"{settings.algo}: {Path(path).stem}")
            finish = spec.load("finish")
            if finish is not None:
                finish(config, state, out_dir)
        except KeyboardInterrupt as err:
            stopped = str(err) or "stopped by Ctrl-C"
            resume = (f"; resume with: ssmrl train {out_dir / 'config.yaml'} resume=true"
                      if (out_dir / "config.yaml").is_file() else "")
            raise KeyboardInterrupt(stopped + resume) from None
    if "episode_return" in metrics:
        final = metrics["episode_return"][-1]
        print(f"final episode_return over seeds: {final.mean():.4f} +- {final.std():.4f}", file=sys.stderr)
    return state, metrics


def evaluate(run_dir: str, argv: list[str]) -> None:
    """Runs `ssmrl evaluate`: the run's trainer evaluates its checkpoint."""
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {run_dir!r} does not exist (give the out_dir of `ssmrl train`)")
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir!r} is not a run folder: it has no config.yaml (give the out_dir of "
                                "`ssmrl train`)")
    settings, config, _ = resolve_config(str(path / "config.yaml"), [])
    spec = algo_spec(settings.algo)
    entry = spec.load("evaluate")
    if entry is None:
        raise ValueError(f"algo {settings.algo!r} has no evaluate command; algos with one: "
                         f"{sorted(name for name, spec in ALGOS.items() if spec.evaluate)}")
    entry(RunFolder(path, settings, config, spec.load("make")(config)), argv)


def evaluate_help() -> str:
    """`ssmrl evaluate --help`: the command, then the options of each algo's evaluate entry."""
    parts = ["usage: ssmrl evaluate RUN_DIR [options]\n\nEvaluate a run's checkpoint; RUN_DIR is the out_dir of "
             "`ssmrl train`. The options depend on the run's algo:"]
    for entry in dict.fromkeys(spec.evaluate for spec in ALGOS.values() if spec.evaluate):
        module = importlib.import_module(entry.partition(":")[0])
        algos = ", ".join(name for name, spec in ALGOS.items() if spec.evaluate == entry)
        parts.append(f"--- {algos} runs ---\n{module.make_parser().format_help()}")
    return "\n\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """The `ssmrl` command; returns its exit code (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="ssmrl", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train from a YAML config")
    train_parser.add_argument("config", help="YAML config file, e.g. configs/ppo_s5_repeat_previous.yaml")
    train_parser.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. core=gru lr=1e-4")
    eval_parser = commands.add_parser("evaluate", help="evaluate a run's checkpoint", add_help=False)
    eval_parser.add_argument("run_dir", nargs="?", help="a run's output folder (holds config.yaml and checkpoints/)")
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command == "evaluate" and (args.run_dir in ("-h", "--help") or args.run_dir is None):
            if args.run_dir is None and not {"-h", "--help"} & set(rest):
                raise ValueError("give the run folder: ssmrl evaluate RUN_DIR [options] (--help lists the options)")
            print(evaluate_help())
            return 0
        initialize_from_env()
        if args.command == "train":
            if rest:
                parser.error(f"unrecognised arguments {rest}; overrides are key=value")
            train(args.config, args.overrides)
        else:
            evaluate(args.run_dir, rest)
    except KeyboardInterrupt as err:
        print(f"ssmrl: {err or 'stopped by Ctrl-C'}", file=sys.stderr)
        return 130
    except USER_ERRORS as err:
        print(f"ssmrl: error: {err}", file=sys.stderr)
        return 2
    except TrainingDiverged as err:
        print(f"ssmrl: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        full = disk_full(err)
        if full is None and not isinstance(err, OSError):
            raise  # a bug: the traceback is the report
        print(f"ssmrl: error: {full or err}", file=sys.stderr)
        return 1
    return 0


def disk_full(err: BaseException) -> str | None:
    """A one-line message when `err` (or an error it came from) says the disk is full, else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if (isinstance(err, OSError) and err.errno == errno.ENOSPC) or "No space left on device" in str(err):
            where = f" writing {err.filename!r}" if getattr(err, "filename", None) else ""
            return (f"the disk is full (no space left on device{where}); free some space, then continue with "
                    "resume=true (the last complete checkpoint is kept)")
        err = err.__cause__ or err.__context__
    return None


if __name__ == "__main__":
    sys.exit(main())

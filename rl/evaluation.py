"""What the `ssmrl evaluate` entries of several algorithms share: an argument parser whose errors are
ValueErrors, a positive-count argument type, and one seed's slice of a seed-stacked state."""

from __future__ import annotations

import argparse
from typing import Any

import jax

from ssmrl.envs.wrappers import positive_int


class EvalArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are ValueErrors (the CLI prints them and exits with code 2), not sys.exit."""

    def error(self, message: str):
        raise ValueError(f"{message}\n{self.format_usage().strip()}")


def positive_count(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        return positive_int("value", int(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from err


def of_seed(tree: Any, i: int) -> Any:
    """Seed `i` of a seed-stacked pytree (leaves `[num_seeds, ...]`)."""
    return jax.tree.map(lambda x: x[i], tree)

"""A trainer that compiles in a moment, for tests of the harness: `algo: toy` counts updates, `seconds` per update."""

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from ssmrl.algos import ALGOS, AlgoSpec
from ssmrl.rl.algorithm import Algorithm


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    num_updates: int = 6
    seconds: float = 0.0
    lr: float = 1.0
    nan_at: int = 0


def make_toy(config: ToyConfig) -> Algorithm:
    def pause(count):
        time.sleep(config.seconds)
        return np.float32(1.0)

    def update(state):
        count = state["count"] + 1
        slow = jax.pure_callback(pause, jax.ShapeDtypeStruct((), jnp.float32), count,
                                                 vmap_method="sequential") if config.seconds else 1.0
        value = count.astype(jnp.float32) * config.lr * slow
        return {"count": count}, {"episode_return": jnp.where(count == config.nan_at, jnp.nan, value)}

    return Algorithm(init=lambda key: {"count": jnp.zeros((), jnp.int32)}, update=update,
                     num_updates=config.num_updates, steps_per_update=1)


def register() -> None:
    """Adds `algo: toy` to the CLI's trainers."""
    ALGOS["toy"] = AlgoSpec("tests.reliability.toy:ToyConfig", "tests.reliability.toy:make_toy")


def config_text(**toy) -> str:
    body = "".join(f"  {key}: {value}\n" for key, value in toy.items())
    return f"algo: toy\ncheckpoint_every: 2\nprogress: false\ntensorboard: false\ntoy:\n{body or '  {}'}\n"

"""Shared pieces of the POPGym game envs: POPGym's card deck, the common env base and registry naming.

POPGym's ``Deck`` lays out ``52 * num_decks`` cards so that card ``c`` has rank ``(c % 52) // 4``
(ace low: 0 = ace ... 12 = king), suit ``c % 4`` (spades, diamonds, clubs, hearts) and color ``c % 2``
(black, red), and deals them in a uniformly shuffled order. Envs only ever look at one feature of a
card, so a deck is either shuffled whole (:func:`shuffled_deck`, for cards laid out on a table) or
dealt lazily by that feature's counts (:func:`deck_counts`, :func:`draw`). Both give the same
distribution of dealt sequences; lazy dealing costs O(#values) per card and needs no shuffle at
reset, which matters because gymnax's auto-reset computes a reset at every step.
"""

import numbers
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import chex
import jax
import jax.numpy as jnp
from gymnax.environments import environment, spaces

DECK_SIZE = 52
FEATURE_SIZES = {"colors": 2, "suits": 4, "ranks": 13}
LEVELS = ("Easy", "Medium", "Hard")


def check_feature(feature: str, accepted: tuple[str, ...] = tuple(FEATURE_SIZES)) -> str:
    """Return `feature` if it is one of `accepted` card features, else raise ValueError."""
    if feature not in accepted:
        raise ValueError(f"unknown card feature {feature!r}; accepted: {list(accepted)}")
    return feature


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return `value` as int if it is an integer >= `minimum`, else raise ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def one_hot(index: jax.Array, size: int) -> jax.Array:
    """float32 one-hot `[..., size]` of an int `[...]` (all zeros where `index` is outside `[0, size)`)."""
    return jax.nn.one_hot(index, size, dtype=jnp.float32)


def shuffled_deck(key: jax.Array, num_decks: int, feature: str) -> jax.Array:
    """`feature` of each card of `num_decks` shuffled decks, in dealing order: int32 `[52 * num_decks]`."""
    cards = jax.random.permutation(key, DECK_SIZE * num_decks)
    by_feature = {"colors": cards % 2, "suits": cards % 4, "ranks": (cards % DECK_SIZE) // 4}
    return by_feature[check_feature(feature)].astype(jnp.int32)


def deck_counts(num_decks: int, feature: str) -> jax.Array:
    """How many cards of `num_decks` full decks have each value of `feature`: int32 `[V]`."""
    size = FEATURE_SIZES[check_feature(feature)]
    return jnp.full(size, DECK_SIZE * num_decks // size, jnp.int32)


def draw(key: jax.Array, remaining: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Deal one card from a deck with `remaining` `[V]` cards per value: (its value, remaining after)."""
    card = jax.random.categorical(key, jnp.log(remaining.astype(jnp.float32)))
    return card.astype(jnp.int32), remaining.at[card].add(-1)


@chex.dataclass(frozen=True)
class GameParams:
    """Runtime params of every POPGym game: the step after which an episode is truncated."""

    max_steps_in_episode: int


class PopGymGame(environment.Environment):
    """Base of the POPGym games: flat float32 observations in [0, 1], `Discrete` actions, time limit.

    Subclasses set the sizes in ``__init__`` via :meth:`_set_sizes`, keep a ``time`` field (steps
    taken) in their state, and implement ``reset_env``/``step_env``. ``step_env`` reports natural
    game ends as ``terminated``; gymnax's ``step`` adds ``truncated = time >= max_steps_in_episode``.
    ``obs_requires_prev_action`` is POPGym's flag for games whose observation only makes sense
    together with the previous action (wrap them with a previous-action wrapper).
    """

    obs_requires_prev_action = False

    def _set_sizes(self, obs_dim: int, num_actions: int, max_steps: int) -> None:
        self.obs_dim, self._num_actions, self._max_steps = obs_dim, num_actions, max_steps

    def _set_deck(self, num_decks: int, feature: str) -> None:
        """For card games: ``num_decks`` decks (``num_cards`` cards) looked at by ``feature``."""
        self.num_decks = check_int("num_decks", num_decks, 1)
        self.num_cards = DECK_SIZE * self.num_decks
        self.feature = check_feature(feature)

    @property
    def default_params(self) -> GameParams:
        return GameParams(max_steps_in_episode=self._max_steps)

    @property
    def num_actions(self) -> int:
        return self._num_actions

    def action_space(self, params: GameParams | None = None) -> spaces.Discrete:
        return spaces.Discrete(self._num_actions)

    def observation_space(self, params: GameParams | None = None) -> spaces.Box:
        return spaces.Box(0.0, 1.0, (self.obs_dim,), jnp.float32)


def _make_at_level(cls: type, settings: Mapping[str, Any], **overrides: Any) -> environment.Environment:
    unknown = sorted(set(overrides) - set(settings))
    if unknown:
        raise ValueError(f"{cls.__name__} got unknown setting(s) {unknown}; accepted: {sorted(settings)}")
    return cls(**{**settings, **overrides})


def difficulty_registry(
    cls: type, levels: Mapping[str, Mapping[str, Any]], port_name: str | None = None, popgym_ids: bool = True
) -> tuple[dict[str, Callable[..., environment.Environment]], dict[str, str]]:
    """REGISTRY and ALIASES of one env class at POPGym's Easy/Medium/Hard settings.

    Args:
        cls: the env class; its ``__name__`` is POPGym's env name.
        levels: ``{"Easy": settings, "Medium": ..., "Hard": ...}``, constructor kwargs per level.
        port_name: the popjaxrl ``make`` spelling of the name where it differs from POPGym's.
        popgym_ids: whether to alias POPGym's gym ids (False for POPGym-style envs that POPGym lacks).
    Returns:
        ``{"<Name>-<Level>": factory(**overrides)}`` and ``{alias: canonical name}`` with POPGym's
        compact (``"<Name><Level>"``) and gym (``"popgym-<Name><Level>-v0"``) names and popjaxrl's.
    """
    if tuple(levels) != LEVELS:
        raise ValueError(f"levels must be exactly {list(LEVELS)}, got {list(levels)}")
    name = cls.__name__
    registry = {f"{name}-{level}": partial(_make_at_level, cls, settings) for level, settings in levels.items()}
    aliases = {}
    for level in LEVELS:
        gym_ids = (f"popgym-{name}{level}-v0",) if popgym_ids else ()
        for alias in (f"{name}{level}", *gym_ids, f"{port_name or name}{level}"):
            aliases[alias] = f"{name}-{level}"
    return registry, aliases

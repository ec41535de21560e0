"""The state-tracking suite: every family's REGISTRY and ALIASES merged into one table each.

``STATE_TRACKING_ENVS``: canonical name (``"Parity-Easy"``) -> factory ``(**overrides) -> env``.
``STATE_TRACKING_ALIASES``: alias (POPGym-style ``"ParityEasy"``) -> canonical name.
"""

from ssmrl.envs.popgym.suite import merge_registries
from ssmrl.envs.state_tracking import modular, permutation

MODULES = (modular, permutation)
STATE_TRACKING_ENVS, STATE_TRACKING_ALIASES = merge_registries(MODULES)

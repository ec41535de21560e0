"""Environments with gymnax's API: POPGym, state-tracking tasks, gymnax, brax and jaxmarl behind one ``make``.

``env, params = envs.make(name, **kwargs)``; ``envs.registered_names()`` lists every name. Wrappers
(logging, previous action/reward, normalisation, vectorisation, time limits) are in
``envs.wrappers``; the in-context RL tasks of Lu et al. 2023 are in ``envs.meta``.
"""

from ssmrl.envs import meta, wrappers
from ssmrl.envs.registry import make, register, registered_names

__all__ = ["make", "meta", "register", "registered_names", "wrappers"]

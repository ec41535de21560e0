"""POPGym memory environments (Morad et al., 2023) in JAX, gymnax API.

One module per env family, each with ``REGISTRY`` (``"<Env>-<Easy|Medium|Hard>"`` -> factory) and
``ALIASES``; :mod:`ssmrl.envs.popgym.suite` merges them into ``POPGYM_ENVS`` and ``POPGYM_ALIASES``.
Shared deck, base-class and registry helpers live in :mod:`ssmrl.envs.popgym.cards`.
"""

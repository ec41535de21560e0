"""State-tracking memory tasks (group word problems) as POPGym-style games in JAX, gymnax API.

Parity, ModularAddition and PermutationComposition at Easy/Medium/Hard (episodes of 50/100/200 steps); each
module has ``REGISTRY`` and ``ALIASES`` like the POPGym families, and :mod:`ssmrl.envs.state_tracking.suite`
merges them into ``STATE_TRACKING_ENVS`` and ``STATE_TRACKING_ALIASES``.
"""

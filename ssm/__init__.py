"""Resettable structured state-space cores and scan kernels, importable on their own.

    from ssm import make_core, reset_scan
    core = make_core("s5", d_model=128, n_layers=4)
"""

from ssm.core import RecurrentCore
from ssm.registry import CORES, make_core
from ssm.rnn import GRUCore, LSTMCore
from ssm.s5 import S5SSM, S5Block, S5Core
from ssm.scan import reset_scan

__all__ = [
    "CORES", "GRUCore", "LSTMCore", "RecurrentCore", "S5Block", "S5Core", "S5SSM", "make_core", "reset_scan",
]

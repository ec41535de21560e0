"""Resettable structured state-space cores and scan kernels, importable on their own.

    from ssm import make_core, reset_scan
    core = make_core("s5", d_model=128, n_layers=4)
"""

from ssm.core import RecurrentCore
from ssm.lru import LRUCore, LRULayer
from ssm.mamba import MambaCore, MambaLayer, MambaState
from ssm.mamba2 import Mamba2Core, Mamba2Layer, ssd_chunked, ssd_recurrent
from ssm.registry import CORES, make_core
from ssm.rnn import GRUCore, LSTMCore
from ssm.s4 import S4SSM, S4Core
from ssm.s4d import S4DSSM, S4DCore
from ssm.s5 import S5SSM, S5Block, S5Core
from ssm.scan import from_planes, reset_scan, reset_scan_planes, to_planes

__all__ = [
    "S4Core", "S4DCore", "S4DSSM", "S4SSM",
    "LRUCore", "LRULayer", "Mamba2Core", "Mamba2Layer", "MambaCore", "MambaLayer", "MambaState", "ssd_chunked",
    "ssd_recurrent",
    "CORES", "GRUCore", "LSTMCore", "RecurrentCore", "S5Block", "S5Core", "S5SSM", "make_core", "reset_scan",
    "reset_scan_planes", "to_planes", "from_planes",
]

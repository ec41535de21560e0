"""Resettable structured state-space cores and scan kernels, importable on their own.

    from ssmrl.ssm import make_core, reset_scan
    core = make_core("s5", d_model=128, n_layers=4)
"""

from ssmrl.ssm.core import RecurrentCore
from ssmrl.ssm.deltanet import (
    GatedDeltaNetCore,
    GatedDeltaNetLayer,
    GatedDeltaProductCore,
    gated_delta_chunked,
    gated_delta_recurrent,
)
from ssmrl.ssm.lru import LRUCore, LRULayer
from ssmrl.ssm.mamba import MambaCore, MambaLayer, MambaState
from ssmrl.ssm.mamba2 import Mamba2Core, Mamba2Layer, ssd_chunked, ssd_recurrent
from ssmrl.ssm.registry import CORES, make_core
from ssmrl.ssm.rnn import GRUCore, LSTMCore
from ssmrl.ssm.s4 import S4SSM, S4Core
from ssmrl.ssm.s4d import S4DSSM, S4DCore
from ssmrl.ssm.s5 import S5SSM, S5Block, S5Core
from ssmrl.ssm.scan import from_planes, reset_scan, reset_scan_planes, to_planes

__all__ = [
    "S4Core", "S4DCore", "S4DSSM", "S4SSM",
    "GatedDeltaNetCore", "GatedDeltaNetLayer", "GatedDeltaProductCore", "gated_delta_chunked", "gated_delta_recurrent",
    "LRUCore", "LRULayer", "Mamba2Core", "Mamba2Layer", "MambaCore", "MambaLayer", "MambaState", "ssd_chunked",
    "ssd_recurrent",
    "CORES", "GRUCore", "LSTMCore", "RecurrentCore", "S5Block", "S5Core", "S5SSM", "make_core", "reset_scan",
    "reset_scan_planes", "to_planes", "from_planes",
]

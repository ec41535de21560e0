"""Hand-written accelerator kernels (Pallas) for hot loops of the SSM cores; `ssmrl.ssm.scan` dispatches to them."""

from ssmrl.ssm.kernels.pallas_scan import (
    SUPPORTED_DTYPES,
    from_planes,
    kernel_compiles,
    on_gpu,
    pallas_reset_scan,
    pallas_reset_scan_planes,
    to_planes,
)

__all__ = [
    "SUPPORTED_DTYPES", "from_planes", "kernel_compiles", "on_gpu", "pallas_reset_scan", "pallas_reset_scan_planes",
    "to_planes",
]

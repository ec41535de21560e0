"""The eigenvalue range of a diagonal transition: [0, 1] as published, or [-1, 1] (Grazzi et al., ICLR 2025,
"Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues").

A finite-precision linear RNN whose transitions have only non-negative real eigenvalues cannot solve parity
(Grazzi et al., Sec. 4, after Sarrof et al. 2024). Their fix for a diagonal transition s in [0, 1] (Mamba's
s = exp(-dt exp(w))) is the map s -> 2 s - 1, whose range is [-1, 1] (Sec. 4; the authors' reference code computes
`2 * exp(dt A) - 1`). The initialisation of the parameters behind s is left as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

EIGENVALUE_RANGES = ("[0,1]", "[-1,1]")


def check_eigenvalue_range(owner: str, value) -> str:
    """The canonical name of `value`, one of EIGENVALUE_RANGES: a string (spaces ignored) or a pair such as
    (-1, 1) (what YAML makes of an unquoted [-1,1]). ValueError naming the value and the accepted ones."""
    if isinstance(value, str):
        name = value.replace(" ", "")
    elif isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, int | float) for v in value):
        name = f"[{value[0]:g},{value[1]:g}]"
    else:
        name = None
    if name not in EIGENVALUE_RANGES:
        raise ValueError(f"{owner}: unknown eigenvalue_range {value!r}; accepted: {EIGENVALUE_RANGES}")
    return name


def extend_range(s, eigenvalue_range: str):
    """s in [0, 1] -> s ("[0,1]") or 2 s - 1 ("[-1,1]"), elementwise."""
    return s if eigenvalue_range == "[0,1]" else 2.0 * s - 1.0

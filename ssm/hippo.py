"""HiPPO-LegS matrices (Gu et al. 2020) and their normal-plus-low-rank form (Gu, Goel, Re 2022).

All functions return float64/complex128 numpy arrays: they run once, at initialisation.
"""

from __future__ import annotations

import numpy as np


def hippo_legs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """HiPPO-LegS state matrix A `[N, N]` and input vector B `[N]` (already negated: dx/dt = A x + B u).

    A_nk = -sqrt(2n+1) sqrt(2k+1) for n > k, -(n+1) for n = k, 0 for n < k; B_n = sqrt(2n+1).
    """
    if n < 1:
        raise ValueError(f"hippo_legs: state size must be >= 1, got {n}")
    q = np.sqrt(2.0 * np.arange(n) + 1.0)
    a = -np.tril(np.outer(q, q), k=-1) - np.diag(np.arange(n) + 1.0)
    return a, q.copy()


def hippo_legs_nplr(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normal-plus-low-rank form A = A_normal - P P^T of HiPPO-LegS; returns (A_normal `[N,N]`, P `[N]`, B `[N]`).

    A_normal (HiPPO-N) = -I/2 + S with S skew-symmetric.
    """
    a, b = hippo_legs(n)
    p = np.sqrt(np.arange(n) + 0.5)
    return a + np.outer(p, p), p, b


def hippo_normal_eig(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of HiPPO-N: A_normal = V diag(Lambda) V^H with V unitary.

    Returns Lambda `[N]` (real parts all -1/2) and V `[N, N]`, ordered so that eigenvalues with positive
    imaginary part come first (the conjugate-symmetric half is `Lambda[: N // 2]` for even N).
    """
    a_normal, _, _ = hippo_legs_nplr(n)
    skew = a_normal + 0.5 * np.eye(n)
    w, v = np.linalg.eigh(-1j * skew)  # -iS is Hermitian with real eigenvalues w; S = V diag(i w) V^H
    order = np.argsort(-w, kind="stable")
    w, v = w[order], v[:, order]
    return -0.5 + 1j * w, v

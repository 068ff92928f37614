"""Lanczos tridiagonalisation of a symmetric operator, and the broadened spectral density.

Matrix-free: the operator is any ``matvec(v) -> A v``. Used by
:mod:`bench.diagnostics.hessian.spectrum` for the extreme eigenvalues and for stochastic
Lanczos quadrature (Ghorbani, Krishnan & Xiao 2019).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor


@dataclass
class LanczosResult:
    """The tridiagonal ``T`` of a Lanczos run and its eigen-decomposition."""

    alphas: np.ndarray
    betas: np.ndarray  # off-diagonal, len(alphas) - 1
    ritz: np.ndarray  # eigenvalues of T, ascending
    weights: np.ndarray  # squared first components of T's eigenvectors (sum to 1)
    residuals: np.ndarray  # |beta_last * s_last,i| per Ritz value
    converged: bool

    @property
    def steps(self) -> int:
        return len(self.alphas)


def _ritz(alphas: list[float], betas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(alphas, dtype=np.float64)
    if len(a) == 1:
        return a.copy(), np.ones((1, 1))
    return eigh_tridiagonal(a, np.asarray(betas, dtype=np.float64))


def _basis_device(v: Tensor, steps: int) -> torch.device:
    """Keep the Lanczos basis on the GPU only if it takes under a quarter of free memory."""
    if v.device.type != "cuda":
        return v.device
    free, _ = torch.cuda.mem_get_info(v.device)
    return v.device if steps * v.numel() * v.element_size() < free // 4 else torch.device("cpu")


def lanczos(
    matvec: Callable[[Tensor], Tensor],
    v0: Tensor,
    max_steps: int,
    *,
    tol: float | None = None,
    n_top: int = 0,
    want_min: bool = False,
) -> LanczosResult:
    """Lanczos tridiagonalisation with full re-orthogonalisation (Gram-Schmidt, twice).

    Stops after ``max_steps``, on an invariant subspace, or — when ``tol`` is
    given — once the top ``n_top`` Ritz values (and the smallest, if
    ``want_min``) have residuals below ``tol * max|ritz|``. Memory: ``max_steps``
    vectors of the parameter size.
    """
    n = v0.numel()
    max_steps = max(1, min(max_steps, n))
    # Vector algebra happens where the basis lives; only matvec's input/output move.
    basis = torch.empty(max_steps, n, dtype=v0.dtype, device=_basis_device(v0, max_steps))
    q = (v0 / v0.norm()).to(basis.device)
    alphas: list[float] = []
    betas: list[float] = []
    converged = False
    beta_last = 0.0
    for j in range(max_steps):
        basis[j] = q
        w = matvec(q).to(basis.device)
        prev = basis[: j + 1]
        a = float(torch.dot(q, w))
        w = w - a * q
        if j > 0:
            w = w - betas[-1] * prev[j - 1]
        for _ in range(2):  # a second pass removes what rounding let back in
            w = w - prev.T @ (prev @ w)
        b = float(w.norm())
        alphas.append(a)
        beta_last = b
        if _can_stop(b, *_ritz(alphas, betas), tol, n_top, want_min):
            converged = True
            break
        if j == max_steps - 1:
            converged = j + 1 == n  # a full basis is exact
            break
        betas.append(b)
        q = w / b
    ritz, vecs = _ritz(alphas, betas)
    return LanczosResult(
        alphas=np.asarray(alphas),
        betas=np.asarray(betas),
        ritz=ritz,
        weights=vecs[0] ** 2,
        residuals=beta_last * np.abs(vecs[-1]),
        converged=converged,
    )


def _can_stop(
    b: float, ritz: np.ndarray, vecs: np.ndarray, tol: float | None, n_top: int, want_min: bool
) -> bool:
    """After a step with residual norm ``b``: an invariant subspace (the Ritz values are
    exact), or, with ``tol``, every wanted Ritz value's residual below ``tol * max|ritz|``."""
    scale = max(float(np.abs(ritz).max()), 1e-30)
    if b <= 1e-10 * scale:
        return True
    if tol is None or len(ritz) < max(n_top, 1):
        return False
    res = b * np.abs(vecs[-1])
    wanted = list(range(len(ritz) - n_top, len(ritz))) + ([0] if want_min else [])
    return all(res[i] <= tol * scale for i in wanted)


def broadened_density(
    nodes: np.ndarray, weights: np.ndarray, n_grid: int = 1000, sigma_frac: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Average of Gaussian-broadened quadratures: ``(grid, density)``, integrating to 1.

    ``sigma = sigma_frac * (max node - min node)``; the grid extends 6 sigma past
    the extreme nodes so the tails are inside.
    """
    live = weights > 0
    lo, hi = float(nodes[live].min()), float(nodes[live].max())
    width = hi - lo
    sigma = sigma_frac * width if width > 0 else 1e-3 * max(abs(hi), 1.0)
    grid = np.linspace(lo - 6 * sigma, hi + 6 * sigma, n_grid)
    z = (grid[None, :] - nodes.reshape(-1)[:, None]) / sigma
    kernel = np.exp(-0.5 * z**2) / (sigma * math.sqrt(2 * math.pi))
    density = (weights.reshape(-1)[:, None] * kernel).sum(0) / nodes.shape[0]
    return grid, density

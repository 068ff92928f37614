"""The Hessian's figure: the spectral density of one measurement (``hessian_step{N}.npz``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.io import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_density(data: Mapping[str, Any], title: str = "") -> Figure:
    """The spectral density (``grid``, ``density``) on a log scale, the ``top_k``
    eigenvalues marked."""
    density = np.asarray(data["density"])
    fig = new_figure((6.0, 4.0))
    ax = fig.add_subplot()
    floor = max(float(density.max()) * 1e-8, 1e-300)
    ax.semilogy(data["grid"], np.maximum(density, floor), lw=1.2)
    for lam in np.asarray(data["top_k"]):
        ax.axvline(lam, color="tab:red", lw=0.8, ls="--")
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (SLQ, Gaussian-broadened)")
    ax.set_title(title or "Hessian spectral density")
    return fig

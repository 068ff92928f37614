"""The landscape figures: contour (with the trajectory), surface and interpolation."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.io import new_figure


def plot_contour(
    xs: np.ndarray, ys: np.ndarray, z: np.ndarray, title: str = "", path: np.ndarray | None = None
) -> Any:
    """Filled contour of a loss grid, the centre marked, and an optional trajectory path."""
    fig = new_figure((5.5, 4.5))
    ax = fig.add_subplot()
    cs = ax.contourf(xs, ys, z, levels=30, cmap="viridis")
    ax.contour(xs, ys, z, levels=15, colors="k", linewidths=0.4, alpha=0.5)
    fig.colorbar(cs, ax=ax, label="loss")
    if path is not None:
        ax.plot(path[:, 0], path[:, 1], "w.-", lw=1, ms=4, label="trajectory")
        ax.legend(loc="upper right", fontsize=8)
    ax.plot([0], [0], "r*", ms=10)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_title(title)
    return fig


def plot_surface(xs: np.ndarray, ys: np.ndarray, z: np.ndarray, title: str = "") -> Any:
    """3-D surface of a loss grid."""
    fig = new_figure((6.0, 4.8))
    ax = fig.add_subplot(projection="3d")
    gx, gy = np.meshgrid(xs, ys)
    ax.plot_surface(gx, gy, z, cmap="viridis", linewidth=0, antialiased=True)
    ax.set_xlabel("direction 1")
    ax.set_ylabel("direction 2")
    ax.set_zlabel("loss", labelpad=8)
    ax.set_box_aspect(None, zoom=0.9)
    ax.set_title(title)
    return fig


def plot_interpolation(alphas: np.ndarray, losses: np.ndarray) -> Any:
    """Loss along the init -> final line, with the straight line between the ends."""
    fig = new_figure((5.5, 3.8))
    ax = fig.add_subplot()
    ax.plot(alphas, losses, "o-", ms=3, label="loss")
    ax.plot([alphas[0], alphas[-1]], [losses[0], losses[-1]], "k--", lw=0.8, label="linear path")
    ax.set_xlabel("alpha (0 = init, 1 = final)")
    ax.set_ylabel("loss")
    ax.set_title("Linear interpolation")
    ax.legend()
    return fig

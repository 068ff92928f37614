"""Numbers that summarise a landscape: loss at the centre, sharpness, basin width and the
interpolation barrier."""

from __future__ import annotations

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from bench.diagnostics.landscape.directions import Coords


def _interpolator(xs: np.ndarray, ys: np.ndarray, z: np.ndarray) -> RegularGridInterpolator:
    return RegularGridInterpolator((np.asarray(ys, float), np.asarray(xs, float)), z)


def center_loss(xs: Coords, ys: Coords, z: np.ndarray) -> float:
    """The loss at plane coordinates (0, 0) (exact when 0 is a grid node)."""
    return float(_interpolator(np.asarray(xs), np.asarray(ys), z)([[0.0, 0.0]])[0])


def sharpness(xs: Coords, ys: Coords, z: np.ndarray, radius: float = 0.5) -> float:
    """Largest rise of the loss above the centre over grid points within ``radius``
    (Euclidean, in plane coordinates) of the centre."""
    gx, gy = np.meshgrid(np.asarray(xs, float), np.asarray(ys, float))
    inside = np.hypot(gx, gy) <= radius + 1e-12
    return float(z[inside].max() - center_loss(xs, ys, z))


def basin_width(
    xs: Coords,
    ys: Coords,
    z: np.ndarray,
    threshold: float = 0.1,
    n_rays: int = 16,
    n_samples: int = 256,
) -> tuple[float, float]:
    """Mean radius at which the loss first exceeds ``centre + threshold``, over
    ``n_rays`` equally spaced rays from the centre: ``(width, censored)``.

    The loss along a ray is bilinear in the grid; the crossing is interpolated
    linearly between samples. A ray that never crosses inside the grid counts its
    full length (so the mean is then a lower bound); ``censored`` is the
    fraction of such rays.
    """
    xa, ya = np.asarray(xs, float), np.asarray(ys, float)
    interp = _interpolator(xa, ya, z)
    level = center_loss(xa, ya, z) + threshold
    widths, censored = [], 0
    for angle in np.linspace(0, 2 * np.pi, n_rays, endpoint=False):
        u = np.array([np.cos(angle), np.sin(angle)])
        # distance to the grid's edge along u
        limits = [
            (hi if c > 0 else lo) / c
            for c, lo, hi in ((u[0], xa[0], xa[-1]), (u[1], ya[0], ya[-1]))
            if abs(c) > 1e-12
        ]
        r_max = min(limits)
        r = np.linspace(0.0, r_max, n_samples)
        pts = np.stack([r * u[1], r * u[0]], axis=1)  # (y, x) order for the interpolator
        vals = interp(np.clip(pts, [ya[0], xa[0]], [ya[-1], xa[-1]]))
        above = np.nonzero(vals > level)[0]
        if len(above) == 0:
            widths.append(r_max)
            censored += 1
            continue
        i = above[0]
        if i == 0:
            widths.append(0.0)
            continue
        frac = (level - vals[i - 1]) / (vals[i] - vals[i - 1])
        widths.append(float(r[i - 1] + frac * (r[i] - r[i - 1])))
    return float(np.mean(widths)), censored / n_rays


def interp_barrier(alphas: np.ndarray, losses: np.ndarray) -> float:
    """Largest height of the interpolation curve above the straight line joining its
    end losses (>= 0; 0 when the path is convex-like)."""
    alphas, losses = np.asarray(alphas, float), np.asarray(losses, float)
    a = (alphas - alphas[0]) / (alphas[-1] - alphas[0])
    line = (1 - a) * losses[0] + a * losses[-1]
    return float(max((losses - line).max(), 0.0))

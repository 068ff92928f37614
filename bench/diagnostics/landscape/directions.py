"""Directions of a loss-landscape plane: filter-normalised random (Li et al. 2018) or the
principal directions of the training trajectory, and projections onto them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bench.config import ConfigError
from bench.diagnostics.landscape.trajectory import Trajectory
from bench.diagnostics.parameters import (
    Params,
    as_flat,
    flatten_params,
    unflatten_params,
)

Vector = Tensor | Mapping[str, Tensor]
Coords = Sequence[float] | np.ndarray  # plane coordinates along one axis


def random_directions(params: Mapping[str, Tensor], seed: int = 0) -> tuple[Params, Params]:
    """Two filter-normalised Gaussian directions (Li et al. 2018), ``d2`` orthogonal to ``d1``.

    Per row of every >=2-D parameter, the Gaussian row is scaled to the norm of
    the same row of ``params``; 1-D parameters get zero. Drawn on CPU from
    ``seed`` so the same seed gives the same plane on every device.
    """
    gen = torch.Generator().manual_seed(int(seed))

    def one() -> Params:
        out = {}
        for name, w in params.items():
            if w.dim() <= 1:
                out[name] = torch.zeros_like(w)
                continue
            d = torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w)
            rows, w_rows = d.reshape(d.shape[0], -1), w.detach().reshape(w.shape[0], -1)
            scale = w_rows.norm(dim=1, keepdim=True) / rows.norm(dim=1, keepdim=True).clamp_min(
                1e-12
            )
            out[name] = (rows * scale).view_as(w)
        return out

    d1, d2 = one(), one()
    f1, f2 = flatten_params(d1), flatten_params(d2)
    f2 = f2 - (f2 @ f1) / (f1 @ f1).clamp_min(1e-30) * f1
    return d1, unflatten_params(f2, params)


def stack_snapshots(
    trajectory: Any, like: Mapping[str, Tensor] | None, device: torch.device
) -> Tensor:
    """``[T, n]`` from a Trajectory, a 2-D array/tensor, or a list of flat tensors/dicts."""
    if isinstance(trajectory, Trajectory):
        trajectory = trajectory.params
    if isinstance(trajectory, np.ndarray | Tensor) and trajectory.ndim == 2:
        return torch.as_tensor(trajectory).to(device)
    rows = []
    for snap in trajectory:
        if isinstance(snap, Mapping):
            if like is None:
                raise ValueError("dict snapshots need dict parameters to order them")
            snap = as_flat(snap, like)
        rows.append(torch.as_tensor(snap).reshape(-1).to(device))
    return torch.stack(rows)


def _flat(v: Vector, like: Mapping[str, Tensor] | None) -> Tensor:
    """``v`` as one flat vector (a mapping in the order of ``like``, else its own)."""
    if isinstance(v, Tensor):
        return v.reshape(-1)
    return as_flat(v, like if like is not None else v)


def pca_directions(trajectory: Any, final: Vector) -> tuple[Vector, Vector, list[float]]:
    """First two principal directions of ``theta_i - final`` over the trajectory.

    Returns unit directions shaped like ``final`` (flat tensor or dict) and the
    fraction of the trajectory's variance (squared singular values, uncentred as
    in Li et al.) that each explains.
    """
    like = final if isinstance(final, Mapping) else None
    flat = _flat(final, like)
    m = stack_snapshots(trajectory, like, flat.device).to(torch.float64) - flat.to(torch.float64)
    if m.shape[0] < 2:
        raise ConfigError("landscape: the PCA plane needs at least 2 trajectory snapshots")
    _, s, vh = torch.linalg.svd(m, full_matrices=False)
    total = float((s**2).sum())
    explained = [float(s[i] ** 2) / total if total > 0 else 0.0 for i in range(2)]
    d1, d2 = (vh[i].to(flat.dtype) for i in range(2))
    if like is not None:
        return unflatten_params(d1, like), unflatten_params(d2, like), explained
    return d1, d2, explained


def project(trajectory: Any, final: Vector, d1: Vector, d2: Vector) -> np.ndarray:
    """Plane coordinates ``[T, 2]`` of each snapshot (least squares onto ``d1, d2``)."""
    like = final if isinstance(final, Mapping) else None
    f = _flat(final, like)
    basis = torch.stack([_flat(d, like) for d in (d1, d2)])
    m = stack_snapshots(trajectory, like, f.device).to(torch.float64) - f.to(torch.float64)
    coef = torch.linalg.lstsq(basis.T.to(torch.float64), m.T).solution
    return coef.T.cpu().numpy()

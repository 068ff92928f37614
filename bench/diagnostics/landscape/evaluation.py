"""The loss at points of a plane and along a line: batched with ``vmap``, or one at a time.

Grid points are evaluated many at a time: ``vmap`` over plane coordinates of
``functional_call`` at ``center + x d1 + y d2``, chunked so a chunk fits a memory
budget (:mod:`.memory`). :func:`evaluate_plane_loop` is the plain per-point
reference, and :func:`benchmark_grid` times one against the other.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.diagnostics.batches import as_batches, move_to
from bench.diagnostics.context import functional_context
from bench.diagnostics.landscape.directions import (
    Coords,
    Vector,
    random_directions,
)
from bench.diagnostics.landscape.memory import choose_chunk_size, default_memory_budget, point_bytes
from bench.diagnostics.loss import LossFn, loss_at
from bench.diagnostics.parameters import (
    Params,
    as_flat,
    trainable_params,
    unflatten_params,
)


def _prepare(
    module: nn.Module, batches: Any, vectors: Sequence[Vector]
) -> tuple[Params, list, list[Tensor]]:
    like = trainable_params(module)
    device = next(iter(like.values())).device
    flats = [
        as_flat(v, like).to(device=device, dtype=next(iter(like.values())).dtype) for v in vectors
    ]
    return like, [move_to(b, device) for b in as_batches(batches)], flats


def _point_loss(module: nn.Module, loss_fn: LossFn, like: Params) -> Callable[..., Tensor]:
    f = loss_at(module, loss_fn)

    def point(c: Tensor, center: Tensor, d1: Tensor, d2: Tensor, batch: Any) -> Tensor:
        return f(unflatten_params(center + c[0] * d1 + c[1] * d2, like), batch)

    return point


def evaluate_points(
    module: nn.Module,
    loss_fn: LossFn,
    batches: Any,
    center: Vector,
    d1: Vector,
    d2: Vector,
    coords: np.ndarray,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> np.ndarray:
    """Mean loss over ``batches`` at ``center + x d1 + y d2`` for each row ``(x, y)`` of
    ``coords``, ``vmap``-batched in chunks that fit ``memory_budget`` bytes."""
    like, batches, (c0, v1, v2) = _prepare(module, batches, (center, d1, d2))
    coords_t = torch.as_tensor(np.asarray(coords, dtype=np.float64)).to(c0)
    budget = memory_budget or default_memory_budget(c0.device)
    chunk = choose_chunk_size(
        point_bytes(module, loss_fn, batches[0]), budget, len(coords_t), chunk_size
    )
    batched = torch.vmap(_point_loss(module, loss_fn, like), in_dims=(0, None, None, None, None))
    out = torch.zeros(len(coords_t), dtype=torch.float64, device=c0.device)
    with functional_context(module, grad=False):
        for start in range(0, len(coords_t), chunk):
            part = coords_t[start : start + chunk]
            for b in batches:
                out[start : start + chunk] += batched(part, c0, v1, v2, b).to(torch.float64)
    return (out / len(batches)).cpu().numpy()


def evaluate_points_loop(
    module: nn.Module,
    loss_fn: LossFn,
    batches: Any,
    center: Vector,
    d1: Vector,
    d2: Vector,
    coords: np.ndarray,
) -> np.ndarray:
    """:func:`evaluate_points` one point at a time (the reference, and the fallback)."""
    like, batches, (c0, v1, v2) = _prepare(module, batches, (center, d1, d2))
    point = _point_loss(module, loss_fn, like)
    out = np.zeros(len(coords))
    with functional_context(module, grad=False):
        for i, c in enumerate(torch.as_tensor(np.asarray(coords, dtype=np.float64)).to(c0)):
            out[i] = sum(float(point(c, c0, v1, v2, b)) for b in batches) / len(batches)
    return out


def _grid_coords(xs: Coords, ys: Coords) -> np.ndarray:
    gx, gy = np.meshgrid(np.asarray(xs, float), np.asarray(ys, float))  # [len(ys), len(xs)]
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def evaluate_plane(
    module: nn.Module,
    loss_fn: LossFn,
    batches: Any,
    center: Vector,
    d1: Vector,
    d2: Vector,
    xs: Coords,
    ys: Coords,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
) -> np.ndarray:
    """Loss grid ``Z[j, i] = L(center + xs[i] d1 + ys[j] d2)``, shape ``[len(ys), len(xs)]``,
    averaged over ``batches`` (one batch or a list), vmap-batched."""
    z = evaluate_points(
        module, loss_fn, batches, center, d1, d2, _grid_coords(xs, ys), chunk_size, memory_budget
    )
    return z.reshape(len(ys), len(xs))


def evaluate_plane_loop(
    module: nn.Module,
    loss_fn: LossFn,
    batches: Any,
    center: Vector,
    d1: Vector,
    d2: Vector,
    xs: Coords,
    ys: Coords,
) -> np.ndarray:
    """:func:`evaluate_plane` by a plain loop over grid points."""
    z = evaluate_points_loop(module, loss_fn, batches, center, d1, d2, _grid_coords(xs, ys))
    return z.reshape(len(ys), len(xs))


def interpolate(
    module: nn.Module,
    loss_fn: LossFn,
    batch_or_batches: Any,
    theta0: Vector,
    theta1: Vector,
    n_points: int = 21,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loss along ``(1 - a) theta0 + a theta1`` for ``a`` in ``linspace(0, 1, n_points)``."""
    like = trainable_params(module)
    t0, t1 = as_flat(theta0, like), as_flat(theta1, like)
    alphas = np.linspace(0.0, 1.0, n_points)
    coords = np.stack([alphas, np.zeros_like(alphas)], axis=1)
    losses = evaluate_points(
        module, loss_fn, batch_or_batches, t0, t1 - t0, torch.zeros_like(t0), coords, chunk_size
    )
    return alphas, losses


def benchmark_grid(
    module: nn.Module,
    loss_fn: LossFn,
    batches: Any,
    resolution: int = 9,
    chunk_size: int | None = None,
    repeats: int = 3,
    seed: int = 0,
) -> dict[str, float]:
    """Time vmap-batched against per-point evaluation of the same random plane.

    Returns the best-of-``repeats`` seconds for each, ``speedup = loop / vmap``,
    the number of points and the largest absolute difference between the grids.
    """
    like = trainable_params(module)
    d1, d2 = random_directions(like, seed)
    xs = np.linspace(-1, 1, resolution)

    def best(fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
        times, z = [], np.empty(0)
        for _ in range(repeats):
            start = time.perf_counter()
            z = fn()
            times.append(time.perf_counter() - start)
        return min(times), z

    t_vmap, z_vmap = best(
        lambda: evaluate_plane(module, loss_fn, batches, like, d1, d2, xs, xs, chunk_size)
    )
    t_loop, z_loop = best(
        lambda: evaluate_plane_loop(module, loss_fn, batches, like, d1, d2, xs, xs)
    )
    return {
        "points": float(resolution**2),
        "vmap_s": t_vmap,
        "loop_s": t_loop,
        "speedup": t_loop / t_vmap,
        "max_abs_diff": float(np.abs(z_vmap - z_loop).max()),
    }

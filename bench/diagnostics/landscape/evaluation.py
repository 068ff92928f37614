"""The loss at points of a plane and along a line: in ``vmap``-batched chunks, or one at a time.

A point ``(x, y)`` of a plane is the loss at ``center + x d1 + y d2``. Where the
time of a grid goes on CPU (issue 15's profile of 441 points of a 100k-parameter
model) and what this module does about it:

- **Only the parameters that move are batched.** A parameter in which both
  directions are zero (the random plane's biases and norm gains, Li et al.'s
  "ignore biasbn") is the same at every point, so it enters ``vmap`` unbatched
  and layer norms and biases keep their fused kernels.
- **A point's parameters are written once.** Each point's row of one
  ``[K, n_moving]`` buffer is ``center + x d1`` then ``+ y d2`` (two ops, no
  ``[K, n]`` temporaries); the per-point path computes the same two ops, so both
  give the same bits; inside ``vmap`` the rows are split into views.
- **Attention folds the chunk into its batch** (:mod:`.folded_attention`) and
  runs the kernel torch picks, instead of the math kernel's dozen batched ops,
  which cost as much as all the matrix products together.
- **Inference mode**, autocast off, eval mode; the chunk size measured on the
  first points (:mod:`.chunking`) and remembered per model size and device.

``batched=False`` is the plain per-point reference, and
:func:`benchmark_grid` times one against the other.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.diagnostics.batches import as_batches, move_to
from bench.diagnostics.context import eval_mode
from bench.diagnostics.landscape.chunking import CHUNKS
from bench.diagnostics.landscape.directions import (
    Coords,
    Vector,
    random_directions,
)
from bench.diagnostics.landscape.folded_attention import FoldedAttention
from bench.diagnostics.landscape.memory import choose_chunk_size, default_memory_budget, point_bytes
from bench.diagnostics.loss import LossFn, loss_at
from bench.diagnostics.parameters import (
    Params,
    as_flat,
    trainable_params,
    unflatten_params,
)


@contextlib.contextmanager
def evaluation_context(module: nn.Module) -> Iterator[None]:
    """Eval mode (dropout off), autocast off (float32 weights measured in float32) and
    inference mode; SDPA picks its own kernel (nothing here is differentiated)."""
    device = next(iter(trainable_params(module).values())).device
    with eval_mode(module), torch.autocast(device.type, enabled=False), torch.inference_mode():
        yield


@dataclass
@dataclass(frozen=True)
class Surface:
    """The loss surface being measured: ``loss_fn(module, batch)`` averaged over ``batches``
    (one batch or a list) as a function of the module's trainable parameters."""

    module: nn.Module
    loss_fn: LossFn
    batches: Any


@dataclass(frozen=True)
class Plane:
    """The points ``center + x d1 + y d2`` (flat vectors or parameter dicts)."""

    center: Vector
    d1: Vector
    d2: Vector


@dataclass
class _Evaluator:
    """A plane ready to evaluate: the moving parameters' flat center and directions, the rest
    fixed at the center."""

    f: Callable[[Params, Any], Tensor]
    batches: list[Any]
    moving: Params  # the moving parameters of the module, in its order (shapes for unflatten)
    fixed: Params  # the others, at the center's values
    center: Tensor  # flat, over the moving parameters
    d1: Tensor
    d2: Tensor

    @classmethod
    def build(cls, surface: Surface, plane: Plane) -> _Evaluator:
        module, center, d1, d2 = surface.module, plane.center, plane.d1, plane.d2
        like = trainable_params(module)
        ref = next(iter(like.values()))
        c, v1, v2 = (
            unflatten_params(as_flat(v, like).to(device=ref.device, dtype=ref.dtype), like)
            for v in (center, d1, d2)
        )
        moves = {n: bool(v1[n].any() or v2[n].any()) for n in like}
        moving = {n: p for n, p in like.items() if moves[n]}

        def flat(parts: Params) -> Tensor:
            return torch.cat([parts[n].reshape(-1) for n in moving]) if moving else ref.new_zeros(0)

        return cls(
            f=loss_at(module, surface.loss_fn),
            batches=[move_to(b, ref.device) for b in as_batches(surface.batches)],
            moving=moving,
            fixed={n: c[n] for n in like if not moves[n]},
            center=flat(c),
            d1=flat(v1),
            d2=flat(v2),
        )

    @property
    def key(self) -> tuple[Any, ...]:
        """What the best chunk size depends on: model size, device, threads, batch shapes."""
        shapes = tuple(
            tuple((k, tuple(t.shape)) for k, t in sorted(b.items()) if isinstance(t, Tensor))
            if isinstance(b, dict)
            else repr(type(b))
            for b in self.batches
        )
        n_all = self.center.numel() + sum(p.numel() for p in self.fixed.values())
        return (
            n_all,
            self.center.numel(),
            str(self.center.device),
            torch.get_num_threads(),
            shapes,
        )

    def params(self, coords: np.ndarray) -> Tensor:
        """``[K, n_moving]``: row ``i`` is ``center + x_i d1 + y_i d2``."""
        out = torch.empty(
            len(coords), self.center.numel(), dtype=self.center.dtype, device=self.center.device
        )
        for row, (x, y) in zip(out, coords, strict=True):
            torch.add(self.center, self.d1, alpha=float(x), out=row)
            row.add_(self.d2, alpha=float(y))
        return out

    def loss(self, flat: Tensor, batch: Any) -> Tensor:
        return self.f(unflatten_params(flat, self.moving) | self.fixed, batch)

    def point(self, coord: np.ndarray) -> float:
        """The mean loss over the batches at one point, without vmap."""
        flat = self.params(coord[None])[0]
        return sum(float(self.loss(flat, b)) for b in self.batches) / len(self.batches)

    def chunk(self, coords: np.ndarray) -> np.ndarray:
        """The mean loss at each of ``coords``, one vmap call per batch."""
        batched = torch.vmap(self.loss, in_dims=(0, None))
        flats = self.params(coords)
        total = torch.zeros(len(coords), dtype=torch.float64, device=flats.device)
        with FoldedAttention():
            for b in self.batches:
                total += batched(flats, b).to(torch.float64)
        return (total / len(self.batches)).cpu().numpy()

    def run(self, coords: np.ndarray, out: np.ndarray) -> Callable[[int, int, int], None]:
        """``run(start, stop, chunk)``: fill ``out[start:stop]``, ``chunk`` points a call."""

        def run(start: int, stop: int, chunk: int) -> None:
            for s in range(start, stop, chunk):
                part = coords[s : min(s + chunk, stop)]
                if chunk == 1:
                    out[s] = self.point(part[0])
                else:
                    out[s : s + len(part)] = self.chunk(part)

        return run


def evaluate_points(
    surface: Surface,
    plane: Plane,
    coords: np.ndarray,
    *,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    batched: bool = True,
) -> np.ndarray:
    """The loss of ``surface`` at ``plane``'s point ``(x, y)`` for each row of ``coords``.

    ``vmap``-batched in chunks of ``chunk_size`` points (by default the measured fastest
    that fits ``memory_budget`` bytes); ``batched=False``: one point at a time, no vmap
    (the reference the batched path is tested and timed against).
    """
    ev = _Evaluator.build(surface, plane)
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if not batched:
        with evaluation_context(surface.module):
            return np.array([ev.point(c) for c in coords])
    budget = memory_budget or default_memory_budget(ev.center.device)
    fit = choose_chunk_size(
        point_bytes(surface.module, surface.loss_fn, ev.batches[0]), budget, len(coords), chunk_size
    )
    out = np.zeros(len(coords))
    with evaluation_context(surface.module):
        run = ev.run(coords, out)
        if chunk_size is not None:
            run(0, len(coords), fit)
        else:
            CHUNKS.evaluate(ev.key, fit, len(coords), run)
    return out


def _grid_coords(xs: Coords, ys: Coords) -> np.ndarray:
    gx, gy = np.meshgrid(np.asarray(xs, float), np.asarray(ys, float))  # [len(ys), len(xs)]
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def evaluate_plane(
    surface: Surface,
    plane: Plane,
    xs: Coords,
    ys: Coords,
    *,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    batched: bool = True,
) -> np.ndarray:
    """Loss grid ``Z[j, i]`` at ``plane``'s point ``(xs[i], ys[j])``, shape
    ``[len(ys), len(xs)]`` (:func:`evaluate_points` on the grid)."""
    z = evaluate_points(
        surface,
        plane,
        _grid_coords(xs, ys),
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        batched=batched,
    )
    return z.reshape(len(ys), len(xs))


def interpolate(
    surface: Surface,
    theta0: Vector,
    theta1: Vector,
    n_points: int = 21,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Loss along ``(1 - a) theta0 + a theta1`` for ``a`` in ``linspace(0, 1, n_points)``."""
    like = trainable_params(surface.module)
    t0, t1 = as_flat(theta0, like), as_flat(theta1, like)
    alphas = np.linspace(0.0, 1.0, n_points)
    coords = np.stack([alphas, np.zeros_like(alphas)], axis=1)
    line = Plane(t0, t1 - t0, torch.zeros_like(t0))
    losses = evaluate_points(surface, line, coords, chunk_size=chunk_size)
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

    surface, plane = Surface(module, loss_fn, batches), Plane(like, d1, d2)
    t_vmap, z_vmap = best(lambda: evaluate_plane(surface, plane, xs, xs, chunk_size=chunk_size))
    t_loop, z_loop = best(lambda: evaluate_plane(surface, plane, xs, xs, batched=False))
    return {
        "points": float(resolution**2),
        "vmap_s": t_vmap,
        "loop_s": t_loop,
        "speedup": t_loop / t_vmap,
        "max_abs_diff": float(np.abs(z_vmap - z_loop).max()),
    }

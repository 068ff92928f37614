"""Loss landscapes: directions, batched grid evaluation, interpolation, figures.

- 1-D: the loss along the straight line from the initial to the final weights
  (Goodfellow et al. 2015); ``landscape/interp_barrier`` is its largest rise
  above the straight line between its two end losses (Frankle et al. 2020).
- 2-D, random plane: two filter-normalised Gaussian directions around the final
  weights (Li et al. 2018): each row of a >=2-D weight (an output unit / filter)
  is scaled to that row's norm in the weights; 1-D parameters (biases, norm
  gains) are left unperturbed (zero in the direction), the paper's "ignore
  biasbn" option. The second direction is orthogonalised against the first.
- 2-D, PCA plane: the first two principal directions of the training trajectory
  ``theta_i - theta_final`` (Li et al. 2018, section 7), with explained variance.

Grid points are evaluated many at a time: ``vmap`` over plane coordinates of
``functional_call`` at ``center + x d1 + y d2``, chunked so a chunk fits a memory
budget. :func:`evaluate_plane_loop` is the plain per-point reference.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from scipy.interpolate import RegularGridInterpolator
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from bench.config import ConfigError, DiagnosticsConfig
from bench.diagnostics.functional import (
    LossFn,
    Params,
    as_batches,
    as_flat,
    atomic_path,
    flatten_params,
    functional_context,
    loss_at,
    move_to,
    new_figure,
    save_figure,
    save_npz,
    trainable_params,
    unflatten_params,
)

Vector = Tensor | Mapping[str, Tensor]

# ----------------------------------------------------------------------------- directions


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


def _stack(trajectory: Any, like: Mapping[str, Tensor] | None, device: torch.device) -> Tensor:
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


def pca_directions(trajectory: Any, final: Vector) -> tuple[Vector, Vector, list[float]]:
    """First two principal directions of ``theta_i - final`` over the trajectory.

    Returns unit directions shaped like ``final`` (flat tensor or dict) and the
    fraction of the trajectory's variance (squared singular values, uncentred as
    in Li et al.) that each explains.
    """
    like = final if isinstance(final, Mapping) else None
    flat = as_flat(final, like) if like is not None else final.reshape(-1)
    m = _stack(trajectory, like, flat.device).to(torch.float64) - flat.to(torch.float64)
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
    f = as_flat(final, like) if like is not None else final.reshape(-1)
    basis = torch.stack([as_flat(d, like) if like is not None else d.reshape(-1) for d in (d1, d2)])
    m = _stack(trajectory, like, f.device).to(torch.float64) - f.to(torch.float64)
    coef = torch.linalg.lstsq(basis.T.to(torch.float64), m.T).solution
    return coef.T.cpu().numpy()


# ----------------------------------------------------------------------------- memory


class _OutputBytes(TorchDispatchMode):
    """Sums the bytes of every non-view tensor that any op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, Tensor) and not t._is_view():
                self.total += t.numel() * t.element_size()
        return out


def point_bytes(module: nn.Module, loss_fn: LossFn, batch: Any) -> int:
    """Bytes one grid point costs: every op output of one loss evaluation (an upper
    bound on what is alive at once) plus four parameter-sized temporaries."""
    params = trainable_params(module)
    param_bytes = sum(p.numel() * p.element_size() for p in params.values())
    counter = _OutputBytes()
    with functional_context(module, grad=False), counter:
        loss_at(module, loss_fn)(params, batch)
    return counter.total + 4 * param_bytes


def _cpu_budget(device: torch.device) -> int:
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 4 << 30
    return int(min(0.25 * free, 2 << 30))


def _cuda_budget(device: torch.device) -> int:
    free, _ = torch.cuda.mem_get_info(device)
    return int(0.5 * free)


MEMORY_BUDGETS: dict[str, Callable[[torch.device], int]] = {
    "cpu": _cpu_budget,
    "cuda": _cuda_budget,
}


def default_memory_budget(device: torch.device) -> int:
    """Bytes a grid chunk may use: half the free GPU memory, or a quarter of free RAM
    (at most 2 GiB) on CPU and other devices."""
    return MEMORY_BUDGETS.get(device.type, _cpu_budget)(device)


def choose_chunk_size(
    per_point: int, budget: int, n_points: int, requested: int | None = None
) -> int:
    """Grid points per vmap call that fit ``budget`` bytes; ConfigError (one line) if none do
    or if ``requested`` does not."""
    mib = 1 << 20
    if per_point > budget:
        raise ConfigError(
            f"landscape: one grid point needs ~{per_point / mib:.0f} MiB but the memory budget "
            f"is {budget / mib:.0f} MiB; use fewer or smaller evaluation batches, or a larger budget"
        )
    fit = budget // per_point
    if requested is not None:
        if requested > fit:
            raise ConfigError(
                f"landscape: chunk_size={requested} needs ~{requested * per_point / mib:.0f} MiB, "
                f"over the {budget / mib:.0f} MiB budget; allowed: chunk_size <= {fit}"
            )
        return max(1, min(requested, n_points))
    return max(1, min(fit, n_points))


# ----------------------------------------------------------------------------- evaluation


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


def _grid_coords(xs: Sequence[float], ys: Sequence[float]) -> np.ndarray:
    gx, gy = np.meshgrid(np.asarray(xs, float), np.asarray(ys, float))  # [len(ys), len(xs)]
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def evaluate_plane(
    module: nn.Module,
    loss_fn: LossFn,
    batches: Any,
    center: Vector,
    d1: Vector,
    d2: Vector,
    xs: Sequence[float],
    ys: Sequence[float],
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
    xs: Sequence[float],
    ys: Sequence[float],
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


# ----------------------------------------------------------------------------- summary numbers


def _interpolator(xs: np.ndarray, ys: np.ndarray, z: np.ndarray) -> RegularGridInterpolator:
    return RegularGridInterpolator((np.asarray(ys, float), np.asarray(xs, float)), z)


def center_loss(xs: Sequence[float], ys: Sequence[float], z: np.ndarray) -> float:
    """The loss at plane coordinates (0, 0) (exact when 0 is a grid node)."""
    return float(_interpolator(np.asarray(xs), np.asarray(ys), z)([[0.0, 0.0]])[0])


def sharpness(
    xs: Sequence[float], ys: Sequence[float], z: np.ndarray, radius: float = 0.5
) -> float:
    """Largest rise of the loss above the centre over grid points within ``radius``
    (Euclidean, in plane coordinates) of the centre."""
    gx, gy = np.meshgrid(np.asarray(xs, float), np.asarray(ys, float))
    inside = np.hypot(gx, gy) <= radius + 1e-12
    return float(z[inside].max() - center_loss(xs, ys, z))


def basin_width(
    xs: Sequence[float],
    ys: Sequence[float],
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
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    interp = _interpolator(xs, ys, z)
    level = center_loss(xs, ys, z) + threshold
    widths, censored = [], 0
    for angle in np.linspace(0, 2 * np.pi, n_rays, endpoint=False):
        u = np.array([np.cos(angle), np.sin(angle)])
        # distance to the grid's edge along u
        limits = [
            (hi if c > 0 else lo) / c
            for c, lo, hi in ((u[0], xs[0], xs[-1]), (u[1], ys[0], ys[-1]))
            if abs(c) > 1e-12
        ]
        r_max = min(limits)
        r = np.linspace(0.0, r_max, n_samples)
        pts = np.stack([r * u[1], r * u[0]], axis=1)  # (y, x) order for the interpolator
        vals = interp(np.clip(pts, [ys[0], xs[0]], [ys[-1], xs[-1]]))
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


# ----------------------------------------------------------------------------- figures


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


# ----------------------------------------------------------------------------- the report


def _plane_outputs(
    out_dir: Path,
    name: str,
    xs: np.ndarray,
    ys: np.ndarray,
    z: np.ndarray,
    title: str,
    trajectory: np.ndarray | None = None,
    **extra: Any,
) -> None:
    save_npz(out_dir / f"landscape_{name}.npz", xs=xs, ys=ys, losses=z, **extra)
    fig = plot_contour(xs, ys, z, title, trajectory)
    save_figure(fig, out_dir / f"landscape_{name}_contour.png")
    save_figure(plot_surface(xs, ys, z, title), out_dir / f"landscape_{name}_surface.png")


def _span(values: np.ndarray, margin: float = 0.25) -> tuple[float, float]:
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    pad = margin * max(hi - lo, 1e-8)
    return lo - pad, hi + pad


def landscape_report(
    module: nn.Module,
    loss_fn: LossFn,
    batches: Any,
    theta_init: Vector,
    theta_final: Vector,
    trajectory: Any | None,
    out_dir: Path | str,
    resolution: int = 11,
    seed: int = 0,
    span: float = 1.0,
    radius: float = 0.5,
    threshold: float = 0.1,
    n_interp: int = 21,
    chunk_size: int | None = None,
    loss_name: str = "",
) -> dict[str, float]:
    """Interpolation, random plane and (with a trajectory) PCA plane for a loaded model.

    Writes ``landscape_{interp,random,pca}.npz``, contour and surface PNGs and
    ``landscape_summary.json`` into ``out_dir`` (each atomically) and returns the
    ``landscape/...`` numbers. The random plane spans ``[-span, span]^2`` in
    filter-normalised units around ``theta_final`` with ``resolution`` points a
    side (made odd so the centre is a grid node); ``sharpness`` uses ``radius``,
    ``basin_width`` uses ``threshold`` (loss units above the centre). ``loss_name``
    says which loss ``loss_fn`` is (a run passes its training loss); every npz
    records it as ``loss_fn``.
    """
    out_dir = Path(out_dir)
    resolution += 1 - resolution % 2
    like = trainable_params(module)
    final = unflatten_params(as_flat(theta_final, like), like)
    summary: dict[str, float] = {}

    alphas, losses = interpolate(module, loss_fn, batches, theta_init, final, n_interp, chunk_size)
    summary["landscape/interp_barrier"] = interp_barrier(alphas, losses)
    save_npz(
        out_dir / "landscape_interp.npz", alphas=alphas, losses=losses, loss_fn=np.array(loss_name)
    )
    save_figure(plot_interpolation(alphas, losses), out_dir / "landscape_interp.png")

    d1, d2 = random_directions(final, seed)
    xs = ys = np.linspace(-span, span, resolution)
    z = evaluate_plane(module, loss_fn, batches, final, d1, d2, xs, ys, chunk_size)
    width, censored = basin_width(xs, ys, z, threshold)
    summary |= {
        "landscape/center_loss": center_loss(xs, ys, z),
        "landscape/sharpness": sharpness(xs, ys, z, radius),
        "landscape/basin_width": width,
        "landscape/basin_censored": censored,
    }
    _plane_outputs(
        out_dir,
        "random",
        xs,
        ys,
        z,
        "Loss around the final weights (random plane)",
        seed=seed,
        loss_fn=np.array(loss_name),
    )

    if trajectory is not None and len(_stack(trajectory, like, torch.device("cpu"))) >= 2:
        p1, p2, explained = pca_directions(trajectory, final)
        path = project(trajectory, final, p1, p2)
        px = np.linspace(*_span(path[:, 0]), resolution)
        py = np.linspace(*_span(path[:, 1]), resolution)
        zp = evaluate_plane(module, loss_fn, batches, final, p1, p2, px, py, chunk_size)
        summary["landscape/pca_explained_1"], summary["landscape/pca_explained_2"] = explained
        title = f"PCA plane ({100 * explained[0]:.0f}% + {100 * explained[1]:.0f}% of variance)"
        _plane_outputs(
            out_dir,
            "pca",
            px,
            py,
            zp,
            title,
            path,
            path=path,
            explained=explained,
            loss_fn=np.array(loss_name),
        )

    with atomic_path(out_dir / "landscape_summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2))
    return summary


# ----------------------------------------------------------------------------- trajectory


@dataclass
class Trajectory:
    """Parameter snapshots: ``params[i]`` (flat float32) after ``steps[i]`` optimizer steps."""

    steps: np.ndarray
    params: np.ndarray
    names: list[str]
    numels: list[int]


def load_trajectory(path: Path | str) -> Trajectory:
    """Read a ``trajectory.npz`` written by :class:`LandscapeCallback`."""
    with np.load(path) as f:
        return Trajectory(
            steps=f["steps"],
            params=f["params"],
            names=[str(n) for n in f["names"]],
            numels=[int(n) for n in f["numels"]],
        )


class LandscapeCallback(L.Callback):
    """Records a thinned trajectory of flat float32 parameter snapshots on CPU.

    Takes step 0 (the initial weights), every ``every`` optimizer steps, and the
    final step; writes ``out_dir/diagnostics/trajectory.npz`` at the end of
    training. Memory stays bounded: at most ``max_snapshots`` snapshots and
    ``max_bytes`` in total — when full, every other snapshot is dropped and
    ``every`` doubles, so the kept ones still span the whole run evenly.
    ``every=None`` spreads ``max_snapshots`` over the run's planned steps.
    """

    def __init__(
        self,
        out_dir: Path | str,
        every: int | None = None,
        max_snapshots: int = 40,
        max_bytes: int = 512 << 20,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.every = every
        self.max_snapshots = max_snapshots
        self.max_bytes = max_bytes
        self.steps: list[int] = []
        self.snapshots: list[Tensor] = []
        self.names: list[str] = []
        self.numels: list[int] = []
        self.cap = max_snapshots

    @classmethod
    def from_config(
        cls, cfg: DiagnosticsConfig, out_dir: Path | str, **kwargs: Any
    ) -> LandscapeCallback:
        """DiagnosticsConfig has no interval for this, so ``every`` comes from ``kwargs``."""
        del cfg
        return cls(out_dir, **kwargs)

    @property
    def path(self) -> Path:
        return self.out_dir / "diagnostics" / "trajectory.npz"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = trainable_params(pl_module)
        self.names, self.numels = list(params), [p.numel() for p in params.values()]
        per = 4 * sum(self.numels)
        self.cap = max(3, min(self.max_snapshots, self.max_bytes // max(per, 1)))
        if self.every is None:
            total = (
                trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
            )
            self.every = max(1, int(total) // (self.cap - 1))
        self._record(trainer.global_step, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        step = trainer.global_step
        if self.every and step % self.every == 0 and step not in self.steps:
            self._record(step, pl_module)
            if len(self.steps) > self.cap:
                self.steps, self.snapshots = self.steps[::2], self.snapshots[::2]
                self.every *= 2

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step not in self.steps:
            self._record(trainer.global_step, pl_module)
        if trainer.is_global_zero:
            save_npz(
                self.path,
                steps=np.asarray(self.steps, dtype=np.int64),
                params=torch.stack(self.snapshots).numpy(),
                names=np.asarray(self.names),
                numels=np.asarray(self.numels, dtype=np.int64),
            )

    def _record(self, step: int, pl_module: L.LightningModule) -> None:
        flat = flatten_params(trainable_params(pl_module)).to("cpu", torch.float32, copy=True)
        self.steps.append(step)
        self.snapshots.append(flat)


# ----------------------------------------------------------------------------- benchmark


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
        times, z = [], None
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

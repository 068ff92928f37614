"""Every landscape of one trained model into a folder: the npz, the figures and the summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.config import LandscapeConfig
from bench.diagnostics.context import compute_dtype
from bench.diagnostics.landscape.directions import (
    Vector,
    pca_directions,
    project,
    random_directions,
    stack_snapshots,
)
from bench.diagnostics.landscape.evaluation import Plane, Surface, evaluate_plane, interpolate
from bench.diagnostics.landscape.measures import basin_width, center_loss, interp_barrier, sharpness
from bench.diagnostics.loss import LossFn
from bench.diagnostics.parameters import (
    Params,
    as_flat,
    trainable_params,
    unflatten_params,
)
from bench.diagnostics.run_figures import draw_figures
from bench.io import atomic_write, save_npz


def _plane_outputs(
    out_dir: Path,
    name: str,
    xs: np.ndarray,
    ys: np.ndarray,
    z: np.ndarray,
    figures: bool,
    **extra: Any,
) -> None:
    path = save_npz(out_dir / f"landscape_{name}.npz", xs=xs, ys=ys, losses=z, **extra)
    if figures:
        draw_figures(path, path.name)  # contour and surface (titles: run_figures.PLANE_TITLES)


def _span(values: np.ndarray, margin: float = 0.25) -> tuple[float, float]:
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    pad = margin * max(hi - lo, 1e-8)
    return lo - pad, hi + pad


@dataclass
class _Job:
    """One model's landscape: what every part of :func:`landscape_report` shares."""

    module: nn.Module
    loss_fn: LossFn
    batches: Any
    final: Params
    out_dir: Path
    resolution: int
    chunk_size: int | None
    loss_name: str
    figures: bool  # draw the PNGs (bench.diagnostics.run_figures) beside the npz files

    @property
    def surface(self) -> Surface:
        return Surface(self.module, self.loss_fn, self.batches)

    @property
    def dtype(self) -> np.ndarray:
        """What every point's loss is computed in (autocast off), for the npz files."""
        return np.array(compute_dtype(self.module))

    def plane(self, d1: Vector, d2: Vector, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return evaluate_plane(
            self.surface, Plane(self.final, d1, d2), xs, ys, chunk_size=self.chunk_size
        )

    def interpolation(self, theta_init: Vector, n_interp: int) -> dict[str, float]:
        """The loss on the line from the initial to the final weights."""
        alphas, losses = interpolate(
            self.surface, theta_init, self.final, n_interp, self.chunk_size
        )
        path = save_npz(
            self.out_dir / "landscape_interp.npz",
            alphas=alphas,
            losses=losses,
            loss_fn=np.array(self.loss_name),
            compute_dtype=self.dtype,
        )
        if self.figures:
            draw_figures(path, path.name)
        return {"landscape/interp_barrier": interp_barrier(alphas, losses)}

    def random_plane(
        self, seed: int, span: float, radius: float, threshold: float
    ) -> dict[str, float]:
        """The filter-normalised random plane around the final weights."""
        d1, d2 = random_directions(self.final, seed)
        xs = ys = np.linspace(-span, span, self.resolution)
        z = self.plane(d1, d2, xs, ys)
        width, censored = basin_width(xs, ys, z, threshold)
        loss_fn = np.array(self.loss_name)
        _plane_outputs(
            self.out_dir,
            "random",
            xs,
            ys,
            z,
            self.figures,
            seed=seed,
            loss_fn=loss_fn,
            compute_dtype=self.dtype,
        )
        return {
            "landscape/center_loss": center_loss(xs, ys, z),
            "landscape/sharpness": sharpness(xs, ys, z, radius),
            "landscape/basin_width": width,
            "landscape/basin_censored": censored,
        }

    def pca_plane(self, trajectory: Any) -> dict[str, float]:
        """The plane of the trajectory's first two principal directions, the path drawn on it."""
        p1, p2, explained = pca_directions(trajectory, self.final)
        path = project(trajectory, self.final, p1, p2)
        px = np.linspace(*_span(path[:, 0]), self.resolution)
        py = np.linspace(*_span(path[:, 1]), self.resolution)
        zp = self.plane(p1, p2, px, py)
        _plane_outputs(
            self.out_dir,
            "pca",
            px,
            py,
            zp,
            self.figures,
            path=path,
            explained=explained,
            loss_fn=np.array(self.loss_name),
            compute_dtype=self.dtype,
        )
        return {
            "landscape/pca_explained_1": explained[0],
            "landscape/pca_explained_2": explained[1],
        }


def landscape_report(
    module: nn.Module,
    loss_fn: LossFn,
    batches: Any,
    theta_init: Vector,
    theta_final: Vector,
    trajectory: Any | None,
    out_dir: Path | str,
    config: LandscapeConfig | None = None,
    *,
    seed: int = 0,
    chunk_size: int | None = None,
    loss_name: str = "",
    figures: bool = True,
) -> dict[str, float]:
    """Interpolation, random plane and (with a trajectory) PCA plane for a loaded model.

    Writes ``landscape_{interp,random,pca}.npz``, contour and surface PNGs and
    ``landscape_summary.json`` into ``out_dir`` (each atomically; the PNGs only with
    ``figures``, see :mod:`bench.diagnostics.run_figures`) and returns the
    ``landscape/...`` numbers. ``config`` (``diagnostics.landscape``) shapes it: the
    random plane spans ``[-span, span]^2`` in filter-normalised units around
    ``theta_final`` with ``resolution`` points a side (made odd so the centre is a
    grid node); ``sharpness`` uses ``radius``, ``basin_width`` uses ``threshold``
    (loss units above the centre); the line from ``theta_init`` has
    ``interpolation_points``. ``loss_name``
    says which loss ``loss_fn`` is (a run passes its training loss); every npz
    records it as ``loss_fn``. Every loss is computed with autocast off (float32
    under a ``bf16-mixed`` run: a landscape's small differences drown in bf16
    rounding); every npz records the precision as ``compute_dtype``.
    """
    config = config or LandscapeConfig()
    resolution = config.resolution + 1 - config.resolution % 2
    like = trainable_params(module)
    final = unflatten_params(as_flat(theta_final, like), like)
    job = _Job(
        module, loss_fn, batches, final, Path(out_dir), resolution, chunk_size, loss_name, figures
    )
    summary = job.interpolation(theta_init, config.interpolation_points)
    summary |= job.random_plane(seed, config.span, config.radius, config.threshold)
    if trajectory is not None and len(stack_snapshots(trajectory, like, torch.device("cpu"))) >= 2:
        summary |= job.pca_plane(trajectory)
    atomic_write(Path(out_dir) / "landscape_summary.json", json.dumps(summary, indent=2))
    return summary

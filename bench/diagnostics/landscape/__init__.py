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

One concern a module: :mod:`.directions` (random and PCA planes),
:mod:`.trajectory` (the saved snapshots), :mod:`.memory` (the largest ``vmap``
chunk that fits), :mod:`.chunking` (the fastest chunk, measured and remembered),
:mod:`.folded_attention` (SDPA under ``vmap``), :mod:`.evaluation` (the loss on a
grid or a line, batched or per point),
:mod:`.measures` (the summary numbers), :mod:`.figures`, :mod:`.report` (all of
it into a folder) and :mod:`.callback` (records the trajectory during training).
The names below are re-exported for notebooks and tests.
"""

from __future__ import annotations

from bench.diagnostics.landscape.callback import LandscapeCallback
from bench.diagnostics.landscape.directions import (
    Vector,
    pca_directions,
    project,
    random_directions,
)
from bench.diagnostics.landscape.evaluation import (
    Plane,
    Surface,
    benchmark_grid,
    evaluate_plane,
    evaluate_points,
    interpolate,
)
from bench.diagnostics.landscape.measures import basin_width, center_loss, interp_barrier, sharpness
from bench.diagnostics.landscape.memory import choose_chunk_size, default_memory_budget, point_bytes
from bench.diagnostics.landscape.report import landscape_report
from bench.diagnostics.landscape.trajectory import Trajectory, load_trajectory

__all__ = [
    "LandscapeCallback",
    "Plane",
    "Surface",
    "Trajectory",
    "Vector",
    "basin_width",
    "benchmark_grid",
    "center_loss",
    "choose_chunk_size",
    "default_memory_budget",
    "evaluate_plane",
    "evaluate_points",
    "interp_barrier",
    "interpolate",
    "landscape_report",
    "load_trajectory",
    "pca_directions",
    "point_bytes",
    "project",
    "random_directions",
    "sharpness",
]

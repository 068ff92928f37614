"""The report's figures: one function per figure, grouped by family, in a registry.

Each function takes the sweep and the per-cell summaries and returns a
matplotlib Figure (Agg canvas, no pyplot state) or, when there is nothing to
draw, a one-line note saying what was not measured. Nothing here fails the
report: a figure that raises becomes a note.

- ``style``: what every figure shares (canvas, labels, colours, chance line);
- ``quality``: quality per cell, quality against throughput (Pareto);
- ``learning``: learning curves, length generalization;
- ``hyperparameters``: learning-rate sensitivity, hyperparameter importance;
- ``conditioning``: gradient norm by block, Hessian, noise scale and attention entropy;
- ``attention``, ``landscape``: from the best run's diagnostics arrays;
- ``registry``: ``FIGURES`` (name -> ``FigureSpec``) and ``draw_all``.
"""

from __future__ import annotations

from bench.report.figures.attention import MAX_ATTENTION_ROWS, attention_maps
from bench.report.figures.conditioning import grad_norm_depth, hessian, noise_and_entropy
from bench.report.figures.hyperparameters import importance, lr_sensitivity
from bench.report.figures.landscape import landscapes
from bench.report.figures.learning import learning_curves, length_generalization
from bench.report.figures.quality import pareto, quality_by_cell
from bench.report.figures.registry import FIGURES, FigureSpec, RenderedFigure, draw_all
from bench.report.figures.style import (
    DPI,
    WIDTH,
    WORDS,
    Drawn,
    axes_title,
    chance_line,
    colors,
    label,
    log_if_decades,
    new_figure,
    row_label,
    sweep_chance,
    words,
)

__all__ = [
    "DPI",
    "FIGURES",
    "MAX_ATTENTION_ROWS",
    "WIDTH",
    "WORDS",
    "Drawn",
    "FigureSpec",
    "RenderedFigure",
    "attention_maps",
    "axes_title",
    "chance_line",
    "colors",
    "draw_all",
    "grad_norm_depth",
    "hessian",
    "importance",
    "label",
    "landscapes",
    "learning_curves",
    "length_generalization",
    "log_if_decades",
    "lr_sensitivity",
    "new_figure",
    "noise_and_entropy",
    "pareto",
    "quality_by_cell",
    "row_label",
    "sweep_chance",
    "words",
]

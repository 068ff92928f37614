"""The registry of report figures (name -> title, caption, draw function) and the
drawing of them all into a report's figures/ directory.

Nothing here fails the report: a figure that raises becomes a note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.report.analysis import CellSummary
from bench.report.collect import SweepData
from bench.report.figures.attention import attention_maps
from bench.report.figures.conditioning import grad_norm_depth, hessian, noise_and_entropy
from bench.report.figures.hyperparameters import importance, lr_sensitivity
from bench.report.figures.landscape import landscapes
from bench.report.figures.learning import learning_curves, length_generalization
from bench.report.figures.quality import pareto, quality_by_cell
from bench.report.figures.scaling import quality_by_size
from bench.report.figures.style import DPI, Drawn


def _always(data: SweepData) -> bool:
    return True


@dataclass(frozen=True)
class FigureSpec:
    title: str
    caption: str
    draw: Callable[[SweepData, list[CellSummary]], Drawn]
    applies: Callable[[SweepData], bool] = _always  # False: not drawn and not mentioned


FIGURES: dict[str, FigureSpec] = {
    "quality": FigureSpec("Quality per cell",
        "Each dot is one run behind the cell's number (its seed re-runs, else its best tuning "
        "trial); the marker with bars is the mean and its 95% bootstrap interval (open circle: "
        "one run, no interval). Grey: cells that did not learn. Dotted: the task's chance level.",
        quality_by_cell),
    "scaling": FigureSpec("Quality against model size",
        "A size ladder: each cell's mean and 95% bootstrap interval at every rung against its "
        "parameter count, on log axes; the trend findings test how the gap between lines "
        "changes with size.", quality_by_size, applies=lambda data: bool(data.ladder)),
    "lr_sensitivity": FigureSpec("Learning-rate sensitivity",
        "Each dot is one run at the learning rate it used: tuning trials (filled) and seed "
        "re-runs (open diamonds). Runs that diverged (×) or were pruned (▼) have no final value "
        "and sit at the top. Dashed: the bounds of the searched range; dotted: chance.",
        lr_sensitivity),
    "learning_curves": FigureSpec("Learning curves",
        "Per cell, the line is the mean over the runs behind its numbers (seed re-runs, else "
        "the best tuning trial) at every logged step, the band spans their minimum to maximum; "
        "validation points are marked. Dotted: chance; dashed lines: cells that did not learn.",
        learning_curves),
    "length_generalization": FigureSpec("Length generalization",
        "Per cell (not pooled), validation loss at each evaluated length (mean ± sd over its "
        "runs) against the chance loss at that length, and exact match where it was logged per "
        "length.", length_generalization),
    "grad_norm_depth": FigureSpec("Gradient norm by block and step",
        "Per cell, the gradient norm of each block (rows, input to output) at each measured "
        "step (columns), the mean over the cell's runs, on one logarithmic colour scale.",
        grad_norm_depth),
    "hessian": FigureSpec("Hessian over training",
        "Largest eigenvalue (sharpness) and trace of the loss Hessian at every measured step: "
        "mean over the same runs the cell table uses, error bars one standard deviation.",
        hessian),
    "noise_entropy": FigureSpec("Gradient noise scale and attention entropy",
        "B_simple = tr(Σ)/|G|² (mean over the cell's runs, error bars one sd); when an estimate "
        "is negative (|G|² estimated below zero from noisy batches), its two components are "
        "shown beside it. Right: the mean attention entropy in nats.", noise_and_entropy),
    "attention_maps": FigureSpec("What attention learned",
        "The best run of each cell (by the quality metric), at the end of training: one row "
        "per layer, one heatmap per head, on the first validation example (rows: query "
        "positions, columns: key positions, labelled with token ids; colour: attention "
        "probability). Reversal shows an anti-diagonal over the answer, copying a shifted "
        "diagonal. Any run: bench attention RUN_DIR [--step N] [--example K].",
        attention_maps),
    "landscape": FigureSpec("Loss landscapes",
        "Loss around each cell's best run on a random filter-normalised plane; ★ = the trained weights.",
        landscapes),
    "pareto": FigureSpec("Quality against throughput",
        "One point per cell (mean, bars: 95% intervals over its runs). The dashed staircase "
        "joins the cells that learned and that no other such cell outdoes on both quality "
        "and speed: the Pareto front.", pareto),
    "importance": FigureSpec("Hyperparameter importance",
        "How much each tuned parameter explains of the objective, per cell.", importance),
}  # fmt: skip


@dataclass(frozen=True)
class RenderedFigure:
    name: str
    title: str
    caption: str
    path: Path | None  # None: not drawn; see note
    note: str = ""


def draw_all(data: SweepData, summaries: list[CellSummary], out_dir: Path) -> list[RenderedFigure]:
    """Draw every figure into ``out_dir/NAME.png``; failures and gaps become notes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, spec in FIGURES.items():
        if not spec.applies(data):
            continue
        try:
            drawn = spec.draw(data, summaries)
        except Exception as e:  # one broken figure must not cost the whole report
            drawn = f"could not be drawn ({type(e).__name__}: {e})"
        if isinstance(drawn, str):
            out.append(RenderedFigure(name, spec.title, spec.caption, None, drawn))
            continue
        path = out_dir / f"{name}.png"
        drawn.savefig(path, dpi=DPI, format="png")
        out.append(RenderedFigure(name, spec.title, spec.caption, path))
    return out

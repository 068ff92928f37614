"""What every report figure shares: the canvas, cell labels and colours, metric names
in words, the chance line and the log-scale rule.

A figure is a function ``(SweepData, summaries) -> Drawn``: a matplotlib Figure
(Agg canvas, no pyplot state) or, when there is nothing to draw, a one-line note
saying what was not measured.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.report.analysis import CellSummary
from bench.report.collect import SweepData

DPI = 110
WIDTH = 8.0  # inches: 880 px at DPI, comfortable on a laptop screen
Drawn = Figure | str


def new_figure(height: float = 4.2, width: float = WIDTH) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def label(data: SweepData, s: CellSummary | str) -> str:
    """A short cell label: its axis values joined by ' / ' (the axes name the order)."""
    if isinstance(s, str):
        return s
    vals = [s.axes.get(a, "") for a in data.axes]
    return " / ".join(vals) if vals and all(vals) else s.cell


def axes_title(data: SweepData) -> str:
    return " / ".join(data.axes) if data.axes else "cell"


def colors(summaries: list[CellSummary]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(summaries) <= 10 else "tab20"]
    return {s.cell: cmap(i % cmap.N) for i, s in enumerate(summaries)}


def legend(ax: Any, n: int) -> None:
    if n:
        ax.legend(fontsize=8, loc="best", framealpha=0.8, ncol=1 if n <= 6 else 2)


WORDS = {
    "best/val/loss": "best validation loss",
    "val/loss": "validation loss",
    "train/loss": "training loss",
    "val/acc": "validation accuracy",
    "val/acc_nontrivial": "validation accuracy (non-trivial positions)",
    "val/exact_match": "exact match",
}


def words(metric: str) -> str:
    """A metric key in words for titles and axis labels."""
    return WORDS.get(metric, metric)


def chance_line(ax: Any, value: float | None, vertical: bool = False) -> None:
    """A dotted line at the task's chance level, labelled 'chance (value)'."""
    if value is None or not math.isfinite(value):
        return
    draw = ax.axvline if vertical else ax.axhline
    draw(value, ls=":", lw=1.5, color="0.25", label=f"chance ({value:.3g})", zorder=1)


def log_if_decades(ax: Any, values: Any, axis: str = "y") -> None:
    """Log scale when the positive values span more than a decade."""
    v = np.asarray([x for x in np.ravel(values) if np.isfinite(x)], dtype=float)
    if len(v) and np.all(v > 0) and v.max() / v.min() > 10:
        log_axis(ax, axis, float(v.min()), float(v.max()))


def log_axis(ax: Any, axis: str, lo: float, hi: float) -> None:
    """A log-scale axis whose labels do not collide: ticks at 1, 2 and 5 of each decade
    when the values ``lo..hi`` span under three decades (at every decade otherwise),
    labelled plainly ("0.002", "0.05"), and unlabelled minor ticks. Matplotlib's own
    formatter labels the minor ticks of a short log axis in scientific notation, and on
    a figure of this width "3×10⁻³" ran into "4×10⁻³"."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    which = ax.yaxis if axis == "y" else ax.xaxis
    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    short = hi / lo < 1e3 if lo > 0 else False
    which.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if short else (1.0,)))
    which.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}"))
    which.set_minor_formatter(NullFormatter())


def sweep_chance(summaries: list[CellSummary]) -> float | None:
    """The chance level of the quality metric, when the cells agree on one."""
    vals = {round(s.learning.chance, 9) for s in summaries if s.learning.chance is not None}
    return next(iter(vals)) if len(vals) == 1 else None


def excluded_note(s: CellSummary) -> str:
    return f"  ({s.learning.label})" if s.learning.excluded else ""


def row_label(data: SweepData, row: dict[str, Any]) -> str:
    """A run's axis values joined by ' / ' (its cell label; in search mode, its architecture)."""
    vals = [str(row.get(a, "")) for a in data.axes]
    return " / ".join(vals) if vals and all(vals) else str(row["cell"])

"""The figure of a claim: the runs behind its verdict, one kind per registered function.

- ``cells``: every run's value per cell, with the cell mean and its 95% t-interval;
- ``lengths``: the metric against evaluation length (1x = training length), the
  mean over a cell's runs with each run faint behind it;
- ``axis``: the metric against one compared axis (``x``, e.g. the learning rate),
  one line per value of ``by`` (e.g. QK-norm on and off), runs as dots; on a size
  ladder one line per value and rung (the rung by line style), never pooled.
"""

from __future__ import annotations

import math
import re
import textwrap
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sps

from bench.claims.metrics import Samples, counted_rows
from bench.claims.spec import FigureSpec, MetricSpec
from bench.report.collect import SweepData
from bench.report.figures.style import log_axis

WIDTH, HEIGHT = 7.0, 3.6


def _new() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, HEIGHT), dpi=110, layout="constrained")
    return fig, fig.add_subplot()


def _label(metric: str, spec: MetricSpec) -> str:
    return spec.label or metric


def cells(fs: FigureSpec, samples: Samples, spec: MetricSpec, data: SweepData) -> Any:
    from matplotlib.figure import Figure

    # one panel per rung of a ladder (sizes never side by side in one panel); a cell is
    # named by its values, the axes' names once below
    ladder = list(data.ladder)
    rungs = _rungs(samples, ladder)
    by: dict[str, dict[str, list[float]]] = {r: defaultdict(list) for r in rungs}
    axes_of: dict[str, dict[str, str]] = {}
    for s in samples.values:
        by[_rung_label(s.axes, ladder)][s.cell].append(s.value)
        axes_of[s.cell] = s.axes
    names = [a for a in next(iter(axes_of.values()), {}) if a not in ladder]
    n_cells = max((len(c) for c in by.values()), default=1)
    fig = Figure(figsize=(max(WIDTH, 0.75 * n_cells * len(rungs)), HEIGHT), dpi=110,
                 layout="constrained")  # fmt: skip
    panels = fig.subplots(1, len(rungs), sharey=True, squeeze=False)[0]
    for ax, rung in zip(panels, rungs, strict=True):
        cells_here = by[rung]
        for i, cell in enumerate(cells_here):
            v = np.array(cells_here[cell])
            ax.scatter(np.full(len(v), i) + np.linspace(-0.08, 0.08, len(v)), v, s=14,
                       alpha=0.6)  # fmt: skip
            half = _half_interval(v)
            ax.errorbar([i + 0.22], [float(v.mean())], yerr=[[half], [half]], fmt="o",
                        color="black", capsize=4)  # fmt: skip
        labels = ["\n".join(axes_of[c].get(a, "") for a in names) or c for c in cells_here]
        ax.set_xticks(range(len(cells_here)), labels, fontsize=8)
        ax.set_xlabel(" / ".join(names), fontsize=8)
        if rung:
            ax.set_title(rung, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    panels[0].set_ylabel(_wrap(_label(fs.metric, spec)))
    fig.suptitle("each run (dots), the cell mean and its 95% t-interval (black)", fontsize=10)
    return fig


def lengths(fs: FigureSpec, samples: Samples, spec: MetricSpec, data: SweepData) -> Any:
    fig, ax = _new()
    key = re.sub(r"@\d+x$", "", spec.key)
    pat = re.compile(rf"^{re.escape(key)}@(\d+)$")
    per_cell: dict[str, list[dict[int, float]]] = defaultdict(list)
    for r in counted_rows(data):
        if r["status"] != "completed":
            continue
        pts = {int(m.group(1)): v for k, v in r["metrics"].items() if (m := pat.match(k))}
        if pts:
            per_cell[r["cell"]].append(pts)
    train = data.train_length or 1
    for i, (cell, runs) in enumerate(per_cell.items()):
        color = f"C{i}"
        xs = sorted({n for run in runs for n in run})
        for run in runs:
            ax.plot([n / train for n in xs if n in run], [run[n] for n in xs if n in run],
                    color=color, alpha=0.2, lw=1)  # fmt: skip
        mean = [float(np.mean([run[n] for run in runs if n in run])) for n in xs]
        ax.plot([n / train for n in xs], mean, "o-", color=color, label=cell)
    ax.set_xlabel(f"evaluation length / training length ({train})")
    ax.set_ylabel(key)
    ax.set_xscale("log", base=2)
    ratios = sorted({n / train for runs in per_cell.values() for run in runs for n in run})
    ax.set_xticks(ratios, [f"{r:g}x" for r in ratios])
    ax.minorticks_off()
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(f"{key} by evaluation length (runs faint, mean bold)")
    return fig


def axis(fs: FigureSpec, samples: Samples, spec: MetricSpec, data: SweepData) -> Any:
    fig, ax = _new()
    x_axis = (fs.x or "").removeprefix("model.")
    by_axis = (fs.by or "").removeprefix("model.")
    # a ladder's rungs are never pooled: a line per value of `by` and rung, the rung by
    # line style and marker, smallest first
    rungs = _rungs(samples, data.ladder)
    lines: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for s in samples.values:
        try:
            x = float(s.axes[x_axis])
        except (KeyError, ValueError):
            continue
        name = s.axes.get(by_axis, "all") if by_axis else "all"
        lines[(name, _rung_label(s.axes, data.ladder))].append((x, s.value))
    names = sorted({name for name, _ in lines})
    for (name, rung), pts in sorted(
        lines.items(), key=lambda kv: (kv[0][0], rungs.index(kv[0][1]))
    ):
        color, r = f"C{names.index(name)}", rungs.index(rung)
        xs = sorted({x for x, _ in pts})
        label = f"{by_axis}={name}" if by_axis else name
        ax.scatter([x for x, _ in pts], [v for _, v in pts], color=color, s=12, alpha=0.5,
                   marker=MARKERS[r % len(MARKERS)])  # fmt: skip
        ax.plot(xs, [np.mean([v for x2, v in pts if x2 == x]) for x in xs], color=color,
                marker=MARKERS[r % len(MARKERS)], ls=STYLES[r % len(STYLES)],
                label=f"{label}, {rung}" if rung else label)  # fmt: skip
    all_x = [x for pts in lines.values() for x, _ in pts]
    if fs.log_x and all_x and min(all_x) > 0:
        log_axis(ax, "x", min(all_x), max(all_x))
    vals = [s.value for s in samples.values if math.isfinite(s.value)]
    if vals and min(vals) > 0 and max(vals) / min(vals) > 30:
        log_axis(ax, "y", min(vals), max(vals))
    ax.set_xlabel(fs.x or "")
    ax.set_ylabel(_wrap(_label(fs.metric, spec)))
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(f"each run (dots) and the mean (line) against {x_axis}")
    return fig


MARKERS = ("o", "s", "^", "D")
STYLES = ("-", "--", ":", "-.")


def _rung_label(axes: dict[str, str], ladder: list[str]) -> str:
    """ "d_model=64, n_heads=4" for a run of a ladder's rung; "" without a ladder."""
    return ", ".join(f"{a}={axes[a]}" for a in ladder if a in axes)


def _rungs(samples: Samples, ladder: list[str]) -> list[str]:
    """The rung labels of the samples, smallest model first (by the ladder's numbers)."""
    labels = {_rung_label(s.axes, ladder): s.axes for s in samples.values}

    def size(label: str) -> tuple[float, ...]:
        return tuple(_number(labels[label].get(a, "")) for a in ladder)

    return sorted(labels, key=size)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.inf


def _wrap(text: str, width: int = 32) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _half_interval(v: np.ndarray) -> float:
    if len(v) < 2 or float(v.std()) == 0.0:
        return 0.0
    return float(sps.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


FIGURES: dict[str, Callable[[FigureSpec, Samples, MetricSpec, SweepData], Any]] = {
    "cells": cells,
    "lengths": lengths,
    "axis": axis,
}


def draw(
    fs: FigureSpec, samples: Samples, spec: MetricSpec, data: SweepData, path: Path
) -> Path | None:
    """Draw one figure to ``path`` (PNG); None when there is nothing to draw."""
    if not samples.values and fs.kind != "lengths":
        return None
    fig = FIGURES[fs.kind](fs, samples, spec, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path

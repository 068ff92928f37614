"""Quality against model size across a ladder's rungs, one line per compared cell."""

from __future__ import annotations

from bench.report import analysis
from bench.report.analysis import CellSummary
from bench.report.collect import SweepData
from bench.report.figures.style import Drawn, legend, new_figure, words


def quality_by_size(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Mean quality (95% bootstrap interval) against parameters, log axes, per cell line."""
    if not data.ladder:
        return "the sweep has no size ladder (scale.ladder in its spec)"
    metric, direction = data.quality
    compared = [a for a in data.axes if a not in data.ladder]
    lines: dict[str, list[CellSummary]] = {}
    for s in analysis.learned(summaries):
        if s.params and s.quality.mean is not None:
            name = " / ".join(s.axes.get(a, "") for a in compared) or "all"
            lines.setdefault(name, []).append(s)
    if not lines:
        return f"no cell that learned has {metric} and a parameter count"
    fig = new_figure(3.6)
    ax = fig.add_subplot()
    for name, cells in lines.items():
        cells.sort(key=lambda s: s.params or 0)
        xs = [float(s.params or 0) for s in cells]
        ys = [float(s.quality.mean or 0) for s in cells]
        ax.plot(xs, ys, "-", alpha=0.6, label=name)
        for x, s in zip(xs, cells, strict=True):
            if (ci := s.quality.interval()) is not None:
                mean, lo, hi = ci
                ax.errorbar(x, mean, yerr=[[mean - lo], [hi - mean]], fmt="o", capsize=3,
                            color=ax.lines[-1].get_color(), ms=5)  # fmt: skip
    ax.set_xscale("log")
    means = [c.quality.mean or 0.0 for cells in lines.values() for c in cells]
    if min(means) > 0 and max(means) / min(means) > 10:  # a log axis only across decades
        ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel(f"{words(metric)} ({'lower' if direction == 'minimize' else 'higher'} is better)")
    ax.set_title(f"{words(metric).capitalize()} against model size, per cell", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    legend(ax, len(lines))
    return fig

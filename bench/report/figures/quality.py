"""Quality figures: the quality metric per cell, and quality against throughput."""

from __future__ import annotations

from bench.report import analysis
from bench.report.analysis import CellSummary
from bench.report.collect import SweepData
from bench.report.figures.style import (
    Drawn,
    chance_line,
    colors,
    excluded_note,
    label,
    legend,
    log_if_decades,
    new_figure,
    sweep_chance,
    words,
)


def quality_by_cell(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Mean quality per cell with its 95% CI; each run as a dot; the chance line."""
    metric, direction = data.quality
    shown = [s for s in summaries if s.values]
    if not shown:
        return f"no finished run has {metric} yet"
    fig = new_figure(max(2.4, 0.45 * len(shown) + 1.4))
    ax = fig.add_subplot()
    col = colors(summaries)
    for i, s in enumerate(shown):
        q = s.quality
        c = "0.6" if s.learning.excluded else col[s.cell]
        ax.scatter(s.values, [i] * len(s.values), color=c, alpha=0.5, s=20, zorder=2)
        if (ci := q.interval()) is not None:
            mean, lo, hi = ci
            ax.errorbar(mean, i, xerr=[[mean - lo], [hi - mean]], fmt="o",
                        color=c, capsize=4, ms=7, zorder=3)  # fmt: skip
        elif q.mean is not None:  # every cell shown has values
            ax.plot(q.mean, i, "o", mfc="white", color=c, ms=7, zorder=3)
    ax.set_yticks(range(len(shown)),
                  [f"{label(data, s)}  (n={s.quality.n}){excluded_note(s)}" for s in shown])  # fmt: skip
    ax.invert_yaxis()
    chance = sweep_chance(shown)
    chance_line(ax, chance, vertical=True)
    # the chance line counts: runs far below it are told apart on a log scale
    log_if_decades(ax, [v for s in shown for v in s.values] + ([chance] if chance else []), "x")
    ax.set_xlabel(f"{words(metric)} ({'lower' if direction == 'minimize' else 'higher'} is better)")
    ax.set_title(f"{words(metric).capitalize()} per cell: mean and 95% bootstrap interval",
                 fontsize=10)  # fmt: skip
    ax.grid(axis="x", alpha=0.3)
    if sweep_chance(shown) is not None:
        ax.legend(fontsize=8, loc="best")
    return fig


def pareto(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Quality against training throughput per cell; the Pareto front (among cells that
    learned) drawn as a step line through the non-dominated points."""
    metric, direction = data.quality
    pts = [(s, q, t) for s in summaries if (q := s.quality.mean) is not None
           and (t := s.metrics["tokens/s"].mean) is not None]  # fmt: skip
    if not pts:
        return "not measured (no throughput/tokens_per_sec; enable diagnostics.throughput)"
    col = colors(summaries)
    ok = [i for i, (s, _, _) in enumerate(pts) if not s.learning.excluded]
    front_local = analysis.pareto_front([pts[i][1] for i in ok], [pts[i][2] for i in ok],
                                        direction == "minimize")  # fmt: skip
    front = {ok[j] for j in front_local}
    fig = new_figure(4.4)
    ax = fig.add_subplot()
    for i, (s, q, t) in enumerate(pts):
        tp = s.metrics["tokens/s"]
        xerr = [[t - ci[1]], [ci[2] - t]] if (ci := tp.interval()) is not None else None
        yerr = [[q - ci[1]], [ci[2] - q]] if (ci := s.quality.interval()) is not None else None
        c = "0.6" if s.learning.excluded else col[s.cell]
        ax.errorbar(t, q, xerr=xerr, yerr=yerr, fmt="o", ms=9 if i in front else 6, color=c,
                    mec="black" if i in front else c, capsize=3, elinewidth=0.8,
                    label=f"{label(data, s)}{excluded_note(s)}")  # fmt: skip
    chance = sweep_chance(summaries)
    log_if_decades(ax, [q for _, q, _ in pts] + ([chance] if chance else []))
    chance_line(ax, chance)
    if front:
        # The boundary of what the front dominates (slower and worse): a staircase from the
        # left edge through each front point, slow to fast, up (or down) to the plot's edge.
        xlim, ylim = ax.get_xlim(), ax.get_ylim()
        fp = sorted((pts[i][2], pts[i][1]) for i in front)
        far = ylim[1] if direction == "minimize" else ylim[0]
        xs = [xlim[0], *(p[0] for p in fp), fp[-1][0]]
        ys = [fp[0][1], *(p[1] for p in fp), far]
        ax.step(xs, ys, where="pre", color="black", lw=1.2, ls="--", label="Pareto front")
        ax.set_xlim(xlim)
        ax.set_ylim(ylim)
    ax.set_xlabel("training throughput (tokens/s, higher is better)")
    ax.set_ylabel(f"{words(metric)} ({'lower' if direction == 'minimize' else 'higher'} is better)")
    ax.set_title("Quality against throughput (outlined: on the Pareto front; bars: 95% intervals)",
                 fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    legend(ax, len(pts) + 2)
    return fig

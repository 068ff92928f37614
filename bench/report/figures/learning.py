"""Learning figures: loss curves over training, and loss at each evaluation length."""

from __future__ import annotations

import numpy as np

from bench.report.analysis import CellSummary
from bench.report.collect import SweepData, history, series
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
)


def _mean_band(runs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """(steps, mean, min, max) over runs at every step some run logged."""
    by: dict[float, list[float]] = {}
    for x, y in runs:
        for xi, yi in zip(x, y, strict=True):
            by.setdefault(float(xi), []).append(float(yi))
    steps = np.array(sorted(by))
    vals = [by[k] for k in steps]
    return (steps, np.array([np.mean(v) for v in vals]), np.array([min(v) for v in vals]),
            np.array([max(v) for v in vals]))  # fmt: skip


def learning_curves(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Training and validation loss against step: mean over each cell's runs, min-max band."""
    col = colors(summaries)
    found = []
    for s in summaries:
        hs = [h for r in s.rows if (h := history(r["run_dir"]))]
        if hs:
            found.append(
                (s, [series(h, "train/loss") for h in hs], [series(h, "val/loss") for h in hs])
            )
    if not found:
        return "no metrics.csv found in the runs' directories"
    fig = new_figure(4.0)
    axs = fig.subplots(1, 2, sharey=True)
    values = []
    for s, train, val in found:
        for ax, runs, marker in ((axs[0], train, ""), (axs[1], val, "o")):
            runs = [(x, y) for x, y in runs if len(x)]
            if not runs:
                continue
            x, mean, lo, hi = _mean_band(runs)
            values += list(lo) + list(hi)
            ls = "--" if s.learning.excluded else "-"
            lab = f"{label(data, s)} (n={len(runs)}){excluded_note(s)}" if ax is axs[0] else None
            ax.plot(x, mean, ls, marker=marker, ms=3, color=col[s.cell], lw=1.3, label=lab)
            if len(runs) > 1:
                ax.fill_between(x, lo, hi, color=col[s.cell], alpha=0.18, lw=0)
    chance = sweep_chance(summaries)
    for ax, name in zip(axs, ("Training loss", "Validation loss"), strict=True):
        chance_line(ax, chance)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    log_if_decades(axs[0], values)
    axs[0].set_ylabel("loss (line: mean over runs; band: min to max)")
    legend(axs[0], len(found) + (chance is not None))
    return fig


def length_generalization(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Per cell: validation loss (and exact match, when logged) at each evaluation length,
    with the chance loss at each length."""
    from bench.report import generalization

    col = colors(summaries)
    per = [(s, pts) for s in summaries if len(pts := generalization.cell_points(data, s)) >= 2]
    if not per:
        return "val/loss@L was logged at fewer than two lengths (task.eval_scales)"
    base = data.train_length or min(p.length for _, pts in per for p in pts)
    # An exact-match panel only when some cell logged it at two or more lengths.
    has_em = any(sum(p.exact_match is not None for p in pts) >= 2 for _, pts in per)
    fig = new_figure(4.0)
    axs = fig.subplots(1, 2 if has_em else 1, squeeze=False)[0]
    chance: dict[int, float] = {}
    for s, pts in per:
        x = [p.length / base for p in pts]
        ls = "--" if s.learning.excluded else "-"
        axs[0].errorbar(x, [p.loss for p in pts], yerr=[p.sd for p in pts], fmt="o" + ls,
                        color=col[s.cell], lw=1.4, ms=5, capsize=3,
                        label=f"{label(data, s)}{excluded_note(s)}")  # fmt: skip
        if has_em:
            em = [(p.length / base, p.exact_match) for p in pts if p.exact_match is not None]
            if em:
                axs[1].plot(*zip(*em, strict=True), "o" + ls, color=col[s.cell], lw=1.4, ms=5)
        chance.update({p.length: p.chance for p in pts if p.chance is not None})
    if chance:
        ls_ = sorted(chance)
        axs[0].plot([n / base for n in ls_], [chance[n] for n in ls_], ":", color="0.25", lw=1.6,
                    label="chance")  # fmt: skip
    titles = ["Validation loss at each length", "Exact match at each length"]
    for ax, title in zip(axs, titles, strict=False):
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"evaluation length / training length ({base})")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axs[0].set_ylabel("validation loss (mean ± sd over runs)")
    if has_em:
        axs[1].set_ylabel("exact match")
        axs[1].set_ylim(-0.02, 1.02)
    legend(axs[0], len(per) + 1)
    return fig

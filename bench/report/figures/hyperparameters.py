"""Tuning figures: quality against the learning rate, and hyperparameter importances."""

from __future__ import annotations

from typing import Any

from bench.report import analysis
from bench.report.analysis import CellSummary
from bench.report.collect import SweepData
from bench.report.figures.style import (
    Drawn,
    chance_line,
    label,
    legend,
    log_axis,
    log_if_decades,
    new_figure,
    row_label,
    sweep_chance,
    words,
)

Done = dict[str, list[tuple[float, float, str]]]  # group -> (lr, quality, phase) per run
Lost = dict[str, list[tuple[float, str]]]  # group -> (lr, "diverged" | "pruned") per run


def lr_points(data: SweepData, metric: str) -> tuple[Done, Lost]:
    """Every run with a learning rate, by group (its row label): completed runs with their
    final quality and phase, diverged and pruned runs with their status. A seed re-run's
    learning rate is the one its tuning chose."""
    from bench.report import tuning

    done: Done = {}
    lost: Lost = {}
    for r in data.runs():
        lr = r.get("train.lr")
        if r["phase"] == "seed":
            lrs = tuning.seed_lrs([r])
            lr = lrs[0] if lrs else lr
        if not isinstance(lr, int | float):
            continue
        q = analysis.quality(r, metric)
        grp = row_label(data, r)
        if r["status"] == "completed" and q is not None:
            done.setdefault(grp, []).append((float(lr), q, r["phase"]))
        elif r["status"] in ("diverged", "pruned"):
            lost.setdefault(grp, []).append((float(lr), r["status"]))
    return done, lost


def _draw_group(
    ax: Any,
    grp: str,
    color: Any,
    pts: list[tuple[float, float, str]],
    lost: list[tuple[float, str]],
) -> None:
    """One group's runs: tuning trials filled, seed re-runs open diamonds, runs without a
    final value as markers along the top edge."""
    tune = [(lr, q) for lr, q, ph in pts if ph != "seed"]
    seed = [(lr, q) for lr, q, ph in pts if ph == "seed"]
    if tune:
        xs, ys = zip(*tune, strict=True)
        ax.scatter(xs, ys, color=color, s=28, label=grp, zorder=3)
    if seed:
        xs, ys = zip(*seed, strict=True)
        ax.scatter(xs, ys, s=36, marker="D",
                   facecolors="none", edgecolors=color, zorder=3,
                   label=None if tune else grp)  # fmt: skip
    for lr, st in lost:  # no final value: a marker along the top edge
        ax.plot(lr, 0.97, "x" if st == "diverged" else "v", color=color, ms=8, mew=2,
                zorder=3, transform=ax.get_xaxis_transform(), clip_on=False)  # fmt: skip


def lr_sensitivity(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Final quality against the learning rate: each dot one run (tuning and seed runs)."""
    from matplotlib import colormaps

    from bench.report import tuning

    metric, _direction = data.quality
    done, lost = lr_points(data, metric)
    if not done:
        return "no completed trial with a learning rate (train.lr not tuned?)"
    order = [label(data, s) for s in summaries]
    groups = sorted(done.keys() | lost.keys(),
                    key=lambda k: (order.index(k) if k in order else len(order), k))  # fmt: skip
    cmap = colormaps["tab10" if len(groups) <= 10 else "tab20"]
    fig = new_figure(4.6)
    ax = fig.add_subplot()
    qs = [q for v in done.values() for _, q, _ in v]
    for i, grp in enumerate(groups):
        _draw_group(ax, grp, cmap(i % cmap.N), done.get(grp, []), lost.get(grp, []))
    bounds = tuning.lr_bounds(data)
    if bounds:
        for b in bounds:
            ax.axvline(b, color="0.5", lw=1, ls="--", zorder=1)
        ax.axvline(bounds[0], color="0.5", lw=1, ls="--", label="search bounds", zorder=1)
    chance = sweep_chance(summaries)
    chance_line(ax, chance)
    lrs = [lr for v in done.values() for lr, _, _ in v] + [lr for v in lost.values() for lr, _ in v]
    lrs += list(bounds or [])
    log_axis(ax, "x", min(lrs), max(lrs))
    log_if_decades(ax, list(qs) + ([chance] if chance else []))
    ax.set_xlabel("learning rate")
    ax.set_ylabel(words(metric))
    ax.set_title("Learning-rate sensitivity: one dot per run\n(● tuning trial, ◇ seed re-run; "
                 "on the top edge: × diverged, ▼ pruned)", fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    legend(ax, len(groups) + 2)
    return fig


def importance(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Optuna hyperparameter importances per tuning study."""
    imp, notes = analysis.importances(data)
    if not imp:
        return "; ".join(notes) if notes else "no tuning studies"
    params = sorted({p for v in imp.values() for p in v})
    fig = new_figure(max(2.5, 0.35 * len(params) * len(imp) + 1.2))
    ax = fig.add_subplot()
    h = 0.8 / len(imp)
    for j, (study, vals) in enumerate(imp.items()):
        ax.barh([i + j * h for i in range(len(params))], [vals.get(p, 0) for p in params],
                height=h, label=study)  # fmt: skip
    ax.set_yticks([i + 0.4 - h / 2 for i in range(len(params))], params)
    ax.set_xlabel("importance (Optuna default evaluator, normalised)")
    ax.set_title("Hyperparameter importance per cell")
    legend(ax, len(imp))
    return fig

"""The report's figures: one function per figure, in a registry.

Each function takes the sweep and the per-cell summaries and returns a
matplotlib Figure (Agg canvas, no pyplot state) or, when there is nothing to
draw, a one-line note saying what was not measured. Nothing here fails the
report: a figure that raises becomes a note.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.report import analysis
from bench.report.analysis import CellSummary
from bench.report.collect import SweepData, diagnostics_dir, history, load_npz, series

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


def _legend(ax: Any, n: int) -> None:
    if n:
        ax.legend(fontsize=8, loc="best", framealpha=0.8, ncol=1 if n <= 6 else 2)


# ----------------------------------------------------------------------------- helpers

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
        (ax.set_yscale if axis == "y" else ax.set_xscale)("log")


def sweep_chance(summaries: list[CellSummary]) -> float | None:
    """The chance level of the quality metric, when the cells agree on one."""
    vals = {round(s.learning.chance, 9) for s in summaries if s.learning.chance is not None}
    return next(iter(vals)) if len(vals) == 1 else None


def _excluded_note(s: CellSummary) -> str:
    return f"  ({s.learning.label})" if s.learning.excluded else ""


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


# ----------------------------------------------------------------------------- figures


def quality_by_cell(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Mean quality per cell with its 95% CI; each run as a dot; the chance line."""
    metric, direction = analysis.quality_metric(data)
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
                  [f"{label(data, s)}  (n={s.quality.n}){_excluded_note(s)}" for s in shown])  # fmt: skip
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


def row_label(data: SweepData, row: dict[str, Any]) -> str:
    """A run's axis values joined by ' / ' (its cell label; in search mode, its architecture)."""
    vals = [str(row.get(a, "")) for a in data.axes]
    return " / ".join(vals) if vals and all(vals) else str(row["cell"])


def lr_sensitivity(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Final quality against the learning rate: each dot one run (tuning and seed runs)."""
    from matplotlib import colormaps

    from bench.report import tuning

    metric, _direction = analysis.quality_metric(data)
    done: dict[str, list[tuple[float, float, str]]] = {}
    lost: dict[str, list[tuple[float, str]]] = {}
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
        color = cmap(i % cmap.N)
        pts = done.get(grp, [])
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
        for lr, st in lost.get(grp, []):  # no final value: a marker along the top edge
            ax.plot(lr, 0.97, "x" if st == "diverged" else "v", color=color, ms=8, mew=2,
                    zorder=3, transform=ax.get_xaxis_transform(), clip_on=False)  # fmt: skip
    bounds = tuning.lr_bounds(data)
    if bounds:
        for b in bounds:
            ax.axvline(b, color="0.5", lw=1, ls="--", zorder=1)
        ax.axvline(bounds[0], color="0.5", lw=1, ls="--", label="search bounds", zorder=1)
    chance = sweep_chance(summaries)
    chance_line(ax, chance)
    ax.set_xscale("log")
    log_if_decades(ax, list(qs) + ([chance] if chance else []))
    ax.set_xlabel("learning rate")
    ax.set_ylabel(words(metric))
    ax.set_title("Learning-rate sensitivity: one dot per run\n(● tuning trial, ◇ seed re-run; "
                 "on the top edge: × diverged, ▼ pruned)", fontsize=10)  # fmt: skip
    ax.grid(alpha=0.3)
    _legend(ax, len(groups) + 2)
    return fig


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
            lab = f"{label(data, s)} (n={len(runs)}){_excluded_note(s)}" if ax is axs[0] else None
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
    _legend(axs[0], len(found) + (chance is not None))
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
                        label=f"{label(data, s)}{_excluded_note(s)}")  # fmt: skip
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
    _legend(axs[0], len(per) + 1)
    return fig


def grad_norm_depth(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Per-block gradient norm as a block x step heatmap per cell (mean over its runs)."""
    from matplotlib.colors import LogNorm

    found = []
    for s in summaries:
        arrs = []
        for r in s.rows:
            d = diagnostics_dir(r)
            arr = load_npz(d / "gradients.npz") if d else None
            if arr and arr.get("grad_norm_blocks") is not None and arr["grad_norm_blocks"].size:
                arrs.append(arr)
        same = (
            [a for a in arrs if a["grad_norm_blocks"].shape == arrs[0]["grad_norm_blocks"].shape]
            if arrs
            else []
        )
        if same:
            mean = np.mean([a["grad_norm_blocks"] for a in same], axis=0)
            found.append((s, same[0]["steps"], mean, len(same)))
    if not found:
        return "not measured (no diagnostics/gradients.npz; enable diagnostics.gradients)"
    n = len(found)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = new_figure(2.6 * rows + 0.8)
    axs = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    pos = np.concatenate([m[m > 0].ravel() for _, _, m, _ in found])
    norm = LogNorm(vmin=float(pos.min()), vmax=float(pos.max())) if pos.size else None
    im = None
    for ax, (s, steps, m, k) in zip(axs, found, strict=False):
        im = ax.pcolormesh(_edges(steps), np.arange(m.shape[1] + 1) - 0.5, m.T, norm=norm,
                           cmap="magma", shading="flat")  # fmt: skip
        ax.set_title(f"{label(data, s)} (n={k})", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("block (input → output)", fontsize=8)
        ax.set_yticks(range(m.shape[1]))
    for ax in axs[n:]:
        ax.set_visible(False)
    if im is not None:
        fig.colorbar(im, ax=list(axs[:n]), shrink=0.85, label="gradient norm (log scale)")
    return fig


def _edges(steps: np.ndarray) -> np.ndarray:
    """Cell edges around each measured step (midpoints; the ends extended by half a gap)."""
    s = np.asarray(steps, dtype=float)
    if len(s) == 1:
        return np.array([s[0] - 0.5, s[0] + 0.5])
    mid = (s[1:] + s[:-1]) / 2
    return np.concatenate([[s[0] - (mid[0] - s[0])], mid, [s[-1] + (s[-1] - mid[-1])]])


def _over_runs(
    rows: list[dict[str, Any]], fn: Callable[[dict], float | None]
) -> tuple[np.ndarray, ...]:
    """(steps, mean, sd, n) of a derived quantity over the runs' histories, per measured step."""
    runs = []
    for r in rows:
        pts = [
            (h["step"], v)
            for h in history(r["run_dir"])
            if "step" in h and (v := fn(h)) is not None
        ]
        if pts:
            a = np.array(pts)
            runs.append((a[:, 0], a[:, 1]))
    if not runs:
        return (np.zeros(0),) * 4
    by: dict[float, list[float]] = {}
    for x, y in runs:
        for xi, yi in zip(x, y, strict=True):
            by.setdefault(float(xi), []).append(float(yi))
    steps = np.array(sorted(by))
    vals = [np.array(by[k]) for k in steps]
    sd = np.array([v.std(ddof=1) if len(v) > 1 else 0.0 for v in vals])
    return steps, np.array([v.mean() for v in vals]), sd, np.array([len(v) for v in vals])


def _history_panels(
    data: SweepData,
    summaries: list[CellSummary],
    keys: dict[str, Callable[[dict], float | None]],
    missing: str,
    log: tuple[str, ...] = (),
) -> Drawn:
    """One panel per derived quantity (titled in words), one line per cell: the mean over
    the runs behind the cell's numbers at every measured step, error bars one sd."""
    col = colors(summaries)
    lines: dict[str, list[tuple[CellSummary, tuple[np.ndarray, ...]]]] = {k: [] for k in keys}
    for s in summaries:
        for name, fn in keys.items():
            got = _over_runs(s.rows, fn)
            if len(got[0]):
                lines[name].append((s, got))
    if not any(lines.values()):
        return missing
    rows = 1 if len(keys) <= 3 else 2
    fig = new_figure(3.9 * rows)
    axs = np.atleast_1d(fig.subplots(rows, math.ceil(len(keys) / rows))).ravel()
    for ax, (name, ls) in zip(axs, lines.items(), strict=False):
        for s, (x, y, sd, n) in ls:
            ax.errorbar(x, y, yerr=sd, fmt="o-", ms=3, lw=1.2, capsize=2, color=col[s.cell],
                        label=f"{label(data, s)} (n={int(n.max())})")  # fmt: skip
        ax.set_title(name if ls else f"{name}: not measured", fontsize=10)
        ax.set_xlabel("step")
        if name in log and ls and all(np.all(y > 0) for _, (_, y, _, _) in ls):
            log_if_decades(ax, [v for _, (_, y, _, _) in ls for v in y])
        ax.grid(alpha=0.3)
    first = next(iter(keys))
    _legend(axs[0], len(lines[first]))
    return fig


def _key(name: str) -> Callable[[dict], float | None]:
    return lambda row: row.get(name)


def _mean_prefix(prefix: str) -> Callable[[dict], float | None]:
    def fn(row: dict) -> float | None:
        vals = [v for k, v in row.items() if k.startswith(prefix) and math.isfinite(v)]
        return float(np.mean(vals)) if vals else None

    return fn


def hessian(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Top Hessian eigenvalue and trace at every measured step, mean ± sd over the seed runs."""
    return _history_panels(
        data, summaries,
        {"Largest Hessian eigenvalue (sharpness)": _key("hessian/lambda_max"),
         "Hessian trace": _key("hessian/trace")},
        "not measured (no hessian/... in metrics.csv; enable diagnostics.hessian)",
        log=("Largest Hessian eigenvalue (sharpness)", "Hessian trace"),
    )  # fmt: skip


NOISE = "Gradient noise scale B_simple"
NOISE_TRACE = "Noise: estimate of tr(Σ)"
NOISE_G2 = "Signal: estimate of |G|²"


def noise_and_entropy(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Gradient noise scale (with its two components when an estimate is negative) and the
    mean attention entropy over training."""
    negative = any(
        v < 0 for s in summaries for r in s.rows for h in history(r["run_dir"])
        if (v := h.get("cond/noise_scale")) is not None
    )  # fmt: skip
    keys = {NOISE: _key("cond/noise_scale")}
    if negative:
        keys[NOISE_TRACE] = _key("cond/noise_scale_trace")
        keys[NOISE_G2] = _key("cond/noise_scale_grad_sq")
    keys["Attention entropy (nats, layer mean)"] = _mean_prefix("cond/attn_entropy/")
    drawn = _history_panels(
        data, summaries, keys,
        "not measured (no cond/noise_scale or cond/attn_entropy/... in metrics.csv)",
        log=(NOISE,),
    )  # fmt: skip
    if negative and not isinstance(drawn, str):
        for ax in drawn.axes:
            if ax.get_title() in (NOISE, NOISE_TRACE, NOISE_G2):
                ax.axhline(0, color="0.3", lw=0.8)
    return drawn


def landscapes(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Loss contours around each cell's best run (random filter-normalised plane)."""
    metric, direction = analysis.quality_metric(data)
    found = []
    for s in summaries:
        ranked = sorted(s.rows, key=lambda r: analysis.quality(r, metric) or math.inf,
                        reverse=direction != "minimize")  # fmt: skip
        for r in ranked:
            d = diagnostics_dir(r)
            arr = load_npz(d / "landscape_random.npz") if d else None
            if arr and {"xs", "ys", "losses"} <= set(arr):
                found.append((s, arr))
                break
    if not found:
        return "not measured (no diagnostics/landscape_random.npz; run `bench landscape`)"
    n = len(found)
    cols = n if n <= 3 else math.ceil(math.sqrt(n))  # 4 -> 2x2, 5..9 -> 3 wide
    rows = math.ceil(n / cols)
    fig = new_figure(3.0 * rows + 0.6, min(WIDTH, 2.9 * cols + 1.2))
    axs = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    lo = min(float(np.nanmin(a["losses"])) for _, a in found)
    hi = max(float(np.nanmax(a["losses"])) for _, a in found)
    levels = np.linspace(lo, hi, 15) if hi > lo else 15
    cs = None
    for ax, (s, a) in zip(axs, found, strict=False):
        cs = ax.contourf(a["xs"], a["ys"], a["losses"], levels=levels, cmap="viridis")
        ax.plot(0, 0, "r*", ms=10)
        ax.set_title(label(data, s), fontsize=9)
        ax.set_aspect("equal")
        ax.set_xlabel("direction 1", fontsize=8)
        ax.set_ylabel("direction 2", fontsize=8)
    fig.suptitle("Loss around each cell's best run (filter-normalised random plane; "
                 "star: the trained weights)", fontsize=10)  # fmt: skip
    for ax in axs[n:]:
        ax.set_visible(False)
    if cs is not None:
        fig.colorbar(cs, ax=list(axs[:n]), shrink=0.85, label="loss")
    return fig


def pareto(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Quality against training throughput per cell; the Pareto front (among cells that
    learned) drawn as a step line through the non-dominated points."""
    metric, direction = analysis.quality_metric(data)
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
                    label=f"{label(data, s)}{_excluded_note(s)}")  # fmt: skip
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
    _legend(ax, len(pts) + 2)
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
    _legend(ax, len(imp))
    return fig


@dataclass(frozen=True)
class FigureSpec:
    title: str
    caption: str
    draw: Callable[[SweepData, list[CellSummary]], Drawn]


def attention_maps(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """The end-of-training attention maps of each cell's best run (validation example 0)."""
    from bench.diagnostics.attention_plot import FILE, AttentionMaps, draw_panels, panels

    _, direction = analysis.quality_metric(data)
    rows = []
    for s in summaries:

        def maps_file(r: dict) -> Path | None:
            d = diagnostics_dir(r)
            return d / FILE if d is not None and (d / FILE).is_file() else None

        runs = [r for r in s.rows if r.get("value") is not None and maps_file(r)]
        if runs:
            best = (min if direction == "minimize" else max)(runs, key=lambda r: r["value"])
            which = f"trial {best.get('trial', '?')}"
        else:  # no run behind the cell's numbers (all pruned or diverged): its last trial
            tried = [r for r in data.rows if r.get("cell") == s.cell and maps_file(r)]
            if not tried:
                continue
            best = tried[-1]
            which = f"trial {best.get('trial', '?')}, {best.get('status', '?')}"
        path = maps_file(best)
        if path is None:  # not so: best was chosen among runs with maps
            continue
        maps = AttentionMaps.load(path)
        step = maps.steps[-1]
        rows += panels(maps, len(maps.steps) - 1, 0, f"{label(data, s)}\n({which}, step {step})")
    if not rows:
        return "not recorded (no diagnostics/attention_maps.npz; diagnostics.attention_maps)"
    if len(rows) > MAX_ATTENTION_ROWS:
        return (
            f"not drawn: {len(rows)} cell x layer rows (at most {MAX_ATTENTION_ROWS}); "
            "draw a run's maps with bench attention RUN_DIR"
        )
    return draw_panels(rows, "Attention at the end of training, best run per cell")


MAX_ATTENTION_ROWS = 24  # cell x layer rows of heatmaps in one figure


FIGURES: dict[str, FigureSpec] = {
    "quality": FigureSpec("Quality per cell",
        "Each dot is one run behind the cell's number (its seed re-runs, else its best tuning "
        "trial); the marker with bars is the mean and its 95% bootstrap interval (open circle: "
        "one run, no interval). Grey: cells that did not learn. Dotted: the task's chance level.",
        quality_by_cell),
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

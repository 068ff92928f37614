"""The report's figures: one function per figure, in a registry.

Each function takes the sweep and the per-cell summaries and returns a
matplotlib Figure (Agg canvas, no pyplot state) or, when there is nothing to
draw, a one-line note saying what was not measured. Nothing here fails the
report: a figure that raises becomes a note.
"""

from __future__ import annotations

import math
import re
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


# ----------------------------------------------------------------------------- figures


def quality_by_cell(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Mean quality per cell with its 95% CI; each run as a dot."""
    metric, direction = analysis.quality_metric(data)
    shown = [s for s in summaries if s.values]
    if not shown:
        return f"no finished run has {metric} yet"
    fig = new_figure(max(2.2, 0.45 * len(shown) + 1.2))
    ax = fig.add_subplot()
    col = colors(summaries)
    for i, s in enumerate(shown):
        q = s.quality
        ax.scatter(s.values, [i] * len(s.values), color=col[s.cell], alpha=0.45, s=18, zorder=2)
        if q.lo is not None:
            ax.errorbar(q.mean, i, xerr=[[q.mean - q.lo], [q.hi - q.mean]], fmt="o",
                        color=col[s.cell], capsize=4, ms=7, zorder=3)  # fmt: skip
        else:
            ax.plot(q.mean, i, "o", mfc="white", color=col[s.cell], ms=7, zorder=3)
    ax.set_yticks(range(len(shown)), [f"{label(data, s)}  (n={s.quality.n})" for s in shown])
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} ({'lower' if direction == 'minimize' else 'higher'} is better)")
    ax.set_title(f"{axes_title(data)}: mean and 95% bootstrap CI (open circle: no CI)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return fig


def row_label(data: SweepData, row: dict[str, Any]) -> str:
    """A run's axis values joined by ' / ' (its cell label; in search mode, its architecture)."""
    vals = [str(row.get(a, "")) for a in data.axes]
    return " / ".join(vals) if vals and all(vals) else str(row["cell"])


def lr_sensitivity(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Final quality against the tuned learning rate, per cell (tuning trials)."""
    from matplotlib import colormaps

    metric, _ = analysis.quality_metric(data)
    pts: dict[str, list[tuple[float, float]]] = {}
    bad: dict[str, list[float]] = {}
    for r in data.runs():
        lr = r.get("train.lr")
        if r["phase"] == "seed" or not isinstance(lr, int | float):
            continue
        q = analysis.quality(r, metric)
        if r["status"] == "completed" and q is not None:
            pts.setdefault(row_label(data, r), []).append((float(lr), q))
        elif r["status"] == "diverged":
            bad.setdefault(row_label(data, r), []).append(float(lr))
    if not pts:
        return "no completed tuning trial with a learning rate (train.lr not tuned?)"
    order = [label(data, s) for s in summaries]
    groups = sorted(
        pts.keys() | bad.keys(), key=lambda k: (order.index(k) if k in order else len(order), k)
    )
    cmap = colormaps["tab10" if len(groups) <= 10 else "tab20"]
    fig = new_figure()
    ax = fig.add_subplot()
    top = max(q for v in pts.values() for _, q in v)
    for i, grp in enumerate(groups):
        color = cmap(i % cmap.N)
        if grp in pts:
            xy = np.array(sorted(pts[grp]))
            ax.plot(xy[:, 0], xy[:, 1], "o-", color=color, label=grp, ms=5, lw=1)
        if grp in bad:
            ax.plot(bad[grp], [top] * len(bad[grp]), "x", color=color, ms=8, mew=2,
                    label=None if grp in pts else grp)  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (train.lr)")
    ax.set_ylabel(metric)
    ax.set_title("Learning-rate sensitivity (tuning trials; × = diverged)")
    ax.grid(alpha=0.3)
    _legend(ax, len(groups))
    return fig


def learning_curves(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """train/loss and val/loss against step for the runs behind each cell's numbers."""
    col = colors(summaries)
    curves = []
    for s in summaries:
        for r in s.rows:
            h = history(r["run_dir"])
            if h:
                curves.append((s, series(h, "train/loss"), series(h, "val/loss")))
    if not curves:
        return "no metrics.csv found in the runs' directories"
    fig = new_figure(3.8)
    axs = fig.subplots(1, 2, sharey=True)
    seen: set[str] = set()
    for s, (ts, tl), (vs, vl) in curves:
        lab = None if s.cell in seen else label(data, s)
        seen.add(s.cell)
        axs[0].plot(ts, tl, color=col[s.cell], lw=1, alpha=0.8, label=lab)
        axs[1].plot(vs, vl, "o-", color=col[s.cell], lw=1, ms=3, alpha=0.8)
    for ax, name in zip(axs, ("train/loss", "val/loss"), strict=True):
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
    axs[0].set_ylabel("loss")
    _legend(axs[0], len(seen))
    return fig


_AT = re.compile(r"^val/loss@(\d+)$")


def length_generalization(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """val/loss@L against L / training length, per positional encoding (or per cell)."""
    by_group: dict[str, dict[int, list[float]]] = {}
    group_axis = "pos_encoding" if "pos_encoding" in data.axes else None
    for s in summaries:
        g = s.axes.get(group_axis, "") if group_axis else label(data, s)
        for r in s.rows:
            for k, v in r["metrics"].items():
                m = _AT.match(k)
                if m:
                    by_group.setdefault(g, {}).setdefault(int(m.group(1)), []).append(v)
    if not by_group or all(len(v) < 2 for v in by_group.values()):
        return "val/loss@L was logged at fewer than two lengths (task.eval_scales)"
    base = data.train_length or min(min(v) for v in by_group.values())
    fig = new_figure()
    ax = fig.add_subplot()
    for g, per_len in by_group.items():
        ls = sorted(per_len)
        means = [float(np.mean(per_len[n])) for n in ls]
        ax.plot([n / base for n in ls], means, "o-", label=g, lw=1.5, ms=5)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(f"evaluation length / training length ({base})")
    ax.set_ylabel("val/loss (mean over runs)")
    title = "per positional encoding" if group_axis else "per cell"
    ax.set_title(f"Length generalization, {title}")
    ax.grid(alpha=0.3)
    _legend(ax, len(by_group))
    return fig


def grad_norm_depth(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Per-block gradient norm against depth, at the first and the last measurement."""
    col = colors(summaries)
    found = []
    for s in summaries:
        for r in s.rows[:1]:
            d = diagnostics_dir(r)
            arr = load_npz(d / "gradients.npz") if d else None
            if arr and arr.get("grad_norm_blocks") is not None and arr["grad_norm_blocks"].size:
                found.append((s, arr))
    if not found:
        return "not measured (no diagnostics/gradients.npz; enable diagnostics.gradients)"
    fig = new_figure(3.8)
    axs = fig.subplots(1, 2, sharey=True)
    for s, arr in found:
        g = arr["grad_norm_blocks"]
        steps = arr["steps"]
        depth = np.arange(g.shape[1])
        axs[0].plot(depth, g[0], "o-", color=col[s.cell], label=label(data, s), ms=4)
        axs[1].plot(depth, g[-1], "o-", color=col[s.cell], ms=4)
        axs[0].set_title(f"at init (step {int(steps[0])})")
        axs[1].set_title(f"at the end (step {int(steps[-1])})")
    from matplotlib.ticker import MaxNLocator

    for ax in axs:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("block (input → output)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axs[0].set_ylabel("gradient norm")
    _legend(axs[0], len(found))
    return fig


def _history_panels(
    data: SweepData,
    summaries: list[CellSummary],
    keys: dict[str, Callable[[dict], float | None]],
    missing: str,
    log: tuple[str, ...] = (),
) -> Drawn:
    """One panel per derived quantity, one line per cell (its first run)."""
    col = colors(summaries)
    lines: dict[str, list[tuple[CellSummary, np.ndarray, np.ndarray]]] = {k: [] for k in keys}
    for s in summaries:
        h = history(s.rows[0]["run_dir"]) if s.rows else []
        for name, fn in keys.items():
            pts = [(r["step"], v) for r in h if "step" in r and (v := fn(r)) is not None]
            if pts:
                a = np.array(pts)
                lines[name].append((s, a[:, 0], a[:, 1]))
    if not any(lines.values()):
        return missing
    fig = new_figure(3.8)
    axs = np.atleast_1d(fig.subplots(1, len(keys)))
    for ax, (name, ls) in zip(axs, lines.items(), strict=True):
        for s, x, y in ls:
            ax.plot(x, y, "o-", ms=3, lw=1.2, color=col[s.cell], label=label(data, s))
        ax.set_title(name if ls else f"{name}: not measured")
        ax.set_xlabel("step")
        if name in log and ls and all(np.all(y > 0) for _, _, y in ls):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    _legend(axs[0], len(lines[next(iter(keys))]))
    return fig


def _key(name: str) -> Callable[[dict], float | None]:
    return lambda row: row.get(name)


def _mean_prefix(prefix: str) -> Callable[[dict], float | None]:
    def fn(row: dict) -> float | None:
        vals = [v for k, v in row.items() if k.startswith(prefix) and math.isfinite(v)]
        return float(np.mean(vals)) if vals else None

    return fn


def hessian(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Top Hessian eigenvalue and trace over training."""
    return _history_panels(
        data, summaries,
        {"hessian/lambda_max": _key("hessian/lambda_max"), "hessian/trace": _key("hessian/trace")},
        "not measured (no hessian/... in metrics.csv; enable diagnostics.hessian)",
    )  # fmt: skip


def noise_and_entropy(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Gradient noise scale and mean attention entropy over training."""
    return _history_panels(
        data, summaries,
        {"cond/noise_scale": _key("cond/noise_scale"),
         "attention entropy (mean over layers)": _mean_prefix("cond/attn_entropy/")},
        "not measured (no cond/noise_scale or cond/attn_entropy/... in metrics.csv)",
        log=("cond/noise_scale",),
    )  # fmt: skip


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
    for ax in axs[n:]:
        ax.set_visible(False)
    if cs is not None:
        fig.colorbar(cs, ax=list(axs[:n]), shrink=0.85, label="loss")
    return fig


def pareto(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Quality against training throughput per cell, the Pareto front joined."""
    metric, direction = analysis.quality_metric(data)
    pts = [(s, s.quality.mean, s.metrics["tokens/s"].mean) for s in summaries
           if s.quality.mean is not None and s.metrics["tokens/s"].mean is not None]  # fmt: skip
    if not pts:
        return "not measured (no throughput/tokens_per_sec; enable diagnostics.throughput)"
    col = colors(summaries)
    front = analysis.pareto_front([q for _, q, _ in pts], [t for _, _, t in pts],
                                  direction == "minimize")  # fmt: skip
    fig = new_figure()
    ax = fig.add_subplot()
    for i, (s, q, t) in enumerate(pts):
        ax.plot(t, q, "o", ms=9 if i in front else 6, color=col[s.cell],
                mec="black" if i in front else "none", label=label(data, s))  # fmt: skip
    fp = sorted((pts[i][2], pts[i][1]) for i in front)
    ax.plot([p[0] for p in fp], [p[1] for p in fp], "k--", lw=1, label="Pareto front")
    ax.set_xlabel("training throughput (tokens/s, higher is better)")
    ax.set_ylabel(f"{metric} ({'lower' if direction == 'minimize' else 'higher'} is better)")
    ax.set_title("Quality against throughput (outlined: on the Pareto front)")
    ax.grid(alpha=0.3)
    _legend(ax, len(pts) + 1)
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


FIGURES: dict[str, FigureSpec] = {
    "quality": FigureSpec("Quality per cell", "Each dot is one run.", quality_by_cell),
    "lr_sensitivity": FigureSpec("Learning-rate sensitivity",
        "Final quality of every tuning trial against its learning rate.", lr_sensitivity),
    "learning_curves": FigureSpec("Learning curves",
        "The runs behind each cell's numbers (seed runs, else the best tuning trial).",
        learning_curves),
    "length_generalization": FigureSpec("Length generalization",
        "Validation loss at longer sequences than trained on.", length_generalization),
    "grad_norm_depth": FigureSpec("Gradient norm against depth",
        "Per-block gradient norms at the first and last measurement.", grad_norm_depth),
    "hessian": FigureSpec("Hessian spectrum over training",
        "Largest eigenvalue (sharpness) and trace of the loss Hessian.", hessian),
    "noise_entropy": FigureSpec("Gradient noise scale and attention entropy",
        "B_simple = tr(Σ)/|G|² and the mean attention entropy (nats).", noise_and_entropy),
    "landscape": FigureSpec("Loss landscapes",
        "Loss around each cell's best run on a random filter-normalised plane; ★ = the trained weights.",
        landscapes),
    "pareto": FigureSpec("Quality against throughput",
        "Cells not beaten on both quality and speed form the Pareto front.", pareto),
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

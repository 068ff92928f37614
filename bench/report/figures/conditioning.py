"""Conditioning figures: gradient norm by block, the Hessian, the gradient noise scale
and attention entropy over training (from each run's metrics.csv and gradients.npz)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.report.analysis import CellSummary
from bench.report.collect import SweepData, diagnostics_dir, history, load_npz
from bench.report.figures.style import (
    Drawn,
    colors,
    label,
    legend,
    log_if_decades,
    new_figure,
)


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
    legend(axs[0], len(lines[first]))
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

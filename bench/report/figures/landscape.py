"""Loss landscapes around each cell's best run (from diagnostics/landscape_random.npz)."""

from __future__ import annotations

import math

import numpy as np

from bench.report import analysis
from bench.report.analysis import CellSummary
from bench.report.collect import SweepData, diagnostics_dir, load_npz
from bench.report.figures.style import WIDTH, Drawn, label, new_figure


def landscapes(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """Loss contours around each cell's best run (random filter-normalised plane)."""
    metric, direction = data.quality
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

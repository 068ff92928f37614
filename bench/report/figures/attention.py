"""The attention maps of each cell's best run at the end of training."""

from __future__ import annotations

from pathlib import Path

from bench.report.analysis import CellSummary
from bench.report.collect import SweepData, diagnostics_dir
from bench.report.figures.style import Drawn, label

MAX_ATTENTION_ROWS = 24  # cell x layer rows of heatmaps in one figure


def attention_maps(data: SweepData, summaries: list[CellSummary]) -> Drawn:
    """The end-of-training attention maps of each cell's best run (validation example 0)."""
    from bench.diagnostics.attention.plot import FILE, AttentionMaps, draw_panels, panels

    _, direction = data.quality
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
            tried = [r for r in s.trials if maps_file(r)]
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

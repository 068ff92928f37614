"""Plain-language findings, each sentence carrying the number that backs it,
and the list of what is missing (runs still going, failed, diverged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.report import analysis, stats
from bench.report.analysis import CellSummary
from bench.report.collect import SweepData


def g(x: float | None, digits: int = 4) -> str:
    """A number for prose and tables: 4 significant digits; '–' when absent."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    if abs(x) >= max(1000, 10**digits):
        return f"{x:,.0f}"
    if abs(x) >= 10**digits:
        return f"{x:.0f}"
    if abs(x) < 1e-3:
        return f"{x:.{max(digits - 1, 0)}e}"
    return f"{x:#.{digits}g}".rstrip(".")


def ci(est: stats.Estimate) -> str:
    """'2.31 [2.29, 2.33]' or '2.31' when no interval exists."""
    if est.mean is None:
        return "–"
    if est.lo is None:
        return g(est.mean)
    return f"{g(est.mean)} [{g(est.lo)}, {g(est.hi)}]"


@dataclass(frozen=True)
class Finding:
    """One sentence; ``kind`` lets the page style it (result, caution, missing)."""

    text: str
    kind: str = "result"


def _label(data: SweepData, s: CellSummary) -> str:
    vals = [s.axes.get(a, "") for a in data.axes]
    return " / ".join(vals) if vals and all(vals) else s.cell


def comparison_sentence(c: stats.Comparison, metric: str, minimize: bool) -> Finding:
    """One comparison in words, with its numbers and verdict."""
    n = f"{c.n_a} vs {c.n_b} runs"
    if c.verdict == stats.NOT_ENOUGH and min(c.n_a, c.n_b) == 0:
        return Finding(
            f"{c.axis}: {c.a} vs {c.b}: cannot compare, no combination of the other axes "
            f"has finished runs for both {c.a} and {c.b}.",
            "caution",
        )
    if c.verdict == stats.NOT_ENOUGH:
        diff = f"; the means differ by {g(c.diff, 3)}" if c.diff is not None else ""
        return Finding(
            f"{c.axis}: {c.a} vs {c.b}: not enough seeds to tell ({n}; a CI needs "
            f"at least {stats.MIN_SEEDS} per side){diff}.",
            "caution",
        )
    if c.verdict == stats.NO_VARIATION:
        return Finding(
            f"{c.axis}: {c.a} vs {c.b}: every run of each side gave the same {metric} "
            f"(difference {g(c.diff, 3)}, {n}); no test is possible.",
            "caution",
        )
    assert c.diff is not None
    a_better = (c.diff < 0) == minimize
    win, lose = (c.a, c.b) if a_better else (c.b, c.a)
    # The advantage of the winner, positive; its CI maps through the same sign.
    sign = (-1 if minimize else 1) * (1 if a_better else -1)
    size = sign * c.diff
    lo, hi = sorted((sign * c.lo, sign * c.hi)) if c.lo is not None else (None, None)
    interval = f"[{g(lo, 3)}, {g(hi, 3)}]"
    effect = f", Hedges' g = {g(abs(c.hedges_g), 2)}" if c.hedges_g is not None else ""
    stat = f"p = {g(c.p_adj, 2)}, Holm-corrected, {n}{effect}"
    if c.verdict == stats.SIGNIFICANT:
        return Finding(
            f"{c.axis}: {win} beats {lose} by {g(size, 3)} {metric} {interval} ({stat})."
        )
    return Finding(
        f"{c.axis}: {win} vs {lose}: {win} is ahead by {g(size, 3)} {metric} {interval}, "
        f"but this is not significant ({stat}).",
        "caution",
    )


def findings(
    data: SweepData, summaries: list[CellSummary], comps: list[stats.Comparison]
) -> list[Finding]:
    """The findings section, in reading order."""
    metric, direction = analysis.quality_metric(data)
    minimize = direction == "minimize"
    out: list[Finding] = []
    ranked = [s for s in summaries if s.quality.mean is not None]
    ranked.sort(key=lambda s: s.quality.mean if minimize else -s.quality.mean)
    if ranked:
        b = ranked[0]
        out.append(Finding(
            f"Best cell: {_label(data, b)} with {metric} {ci(b.quality)} "
            f"(mean [95% CI] over {b.quality.n} {'seed runs' if b.source == 'seed runs' else 'run'})."
        ))  # fmt: skip
    out += [comparison_sentence(c, metric, minimize) for c in comps]
    for s in summaries:
        if s.diverged:
            out.append(Finding(
                f"{_label(data, s)} diverged in {s.diverged} of {s.finished} finished trials "
                f"({100 * s.diverged / max(s.finished, 1):.0f}%).", "caution"))  # fmt: skip
    fast = [s for s in summaries if s.metrics.get("tokens/s") and s.metrics["tokens/s"].mean]
    if len(fast) >= 2:
        fast.sort(key=lambda s: -s.metrics["tokens/s"].mean)
        f0, f1 = fast[0], fast[-1]
        ratio = f0.metrics["tokens/s"].mean / f1.metrics["tokens/s"].mean
        out.append(Finding(
            f"Fastest: {_label(data, f0)} at {g(f0.metrics['tokens/s'].mean)} tokens/s, "
            f"{ratio:.2f}x the slowest ({_label(data, f1)}, {g(f1.metrics['tokens/s'].mean)})."
        ))  # fmt: skip
    keys = analysis.length_keys(data)
    if "loss@4x" in keys or "loss@2x" in keys:
        lab = "loss@4x" if "loss@4x" in keys else "loss@2x"
        pts = [(s, s.metrics[lab].mean) for s in summaries if s.metrics[lab].mean is not None]
        if len(pts) >= 2:
            pts.sort(key=lambda p: p[1])
            out.append(Finding(
                f"Length generalization: at {lab.split('@')[1]} the training length, "
                f"{_label(data, pts[0][0])} has the lowest val/loss ({g(pts[0][1])}), "
                f"{_label(data, pts[-1][0])} the highest ({g(pts[-1][1])})."
            ))  # fmt: skip
    missing = missing_items(data)
    if missing:
        out.append(Finding(
            f"{len(missing)} item(s) are missing or unfinished (see 'Missing and failed'); "
            "the numbers above use only finished runs.", "missing"))  # fmt: skip
    return out


def missing_items(data: SweepData) -> list[dict[str, Any]]:
    """Trials that did not finish normally, finished runs without summary.json,
    and planned trials not started yet."""
    out = []
    for r in data.rows:
        if r["status"] != "completed":
            out.append({"cell": r["cell"], "phase": r["phase"], "trial": r["trial"],
                        "status": r["status"], "reason": r["reason"] or "–"})  # fmt: skip
        elif r["run_dir"] and not r["has_summary"]:
            out.append({"cell": r["cell"], "phase": r["phase"], "trial": r["trial"],
                        "status": "no summary.json", "reason": f"{r['run_dir']} has no summary.json"})  # fmt: skip
    tune = data.spec.get("tune") or {}
    planned = int(tune.get("trials", 0)) if tune else 0
    seeds = int(data.spec.get("seeds", 0) or 0)
    for cell in data.cells if data.spec.get("compare") else []:
        rows = [r for r in data.rows if r["cell"] == cell]
        n_tune = len({r["trial"] for r in rows if r["phase"] == "tune"})
        if planned and n_tune < planned:
            out.append({"cell": cell, "phase": "tune", "trial": "–", "status": "not started",
                        "reason": f"{n_tune} of {planned} tuning trials exist"})  # fmt: skip
        n_seed = sum(r["phase"] == "seed" and r["status"] == "completed" for r in rows)
        if seeds and n_seed < seeds:
            out.append({"cell": cell, "phase": "seed", "trial": "–", "status": "incomplete",
                        "reason": f"{n_seed} of {seeds} seed runs finished"})  # fmt: skip
    return out

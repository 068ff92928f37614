"""The report's bottom line: at most three plain sentences above the findings.

1. What was compared: the axes and their values, the task, the metric.
2. What the evidence says: for each compared axis, who is ahead in words (beats,
   does as well as, not confirmed, undecided), and whether one cell is best.
3. How sure: from how many seed runs per cell, at what error rate after the
   correction for many comparisons, and what would settle what is still open.

Every word here comes from the same decisions the findings state with their
numbers (:mod:`bench.report.stats`, :mod:`bench.report.findings`); the bottom line
never decides anything on its own, and says "cannot tell" where they do.
"""

from __future__ import annotations

from bench.report import analysis, stats
from bench.report.analysis import CellSummary
from bench.report.collect import SweepData

MAX_LISTED = 4  # comparisons named one by one; beyond this, counted by outcome
ROUGH_BELOW = 5  # seed runs per cell under which bootstrap intervals are too narrow


def bottom_line(
    data: SweepData, summaries: list[CellSummary], comps: list[stats.Comparison]
) -> list[str]:
    """At most three sentences: what was compared, what the evidence says, how sure."""
    metric, direction = data.quality
    better = "lower" if direction == "minimize" else "higher"
    judged = [s for s in summaries if s.values]
    out = [_what(data, summaries, metric, better)]
    if not judged:
        out.append("No run has finished yet, so there is nothing to conclude.")
        return out
    if all(s.learning.excluded for s in judged):
        out.append(
            "No cell learned the task, so this sweep cannot say which choice is better; "
            "the first finding says what to change."
        )
        return out
    out.append(_evidence(data, summaries, comps))
    out.append(_how_sure(summaries, comps))
    return out


def _what(data: SweepData, summaries: list[CellSummary], metric: str, better: str) -> str:
    task = (data.spec.base.get("task") or {}).get("name")
    on = f" on the {task} task" if task else ""
    judged = f", judged by {metric} ({better} is better)"
    compared = [a for a in data.axes if a not in data.ladder]
    if not compared:
        tuned = ", ".join(data.tuned) or "the configuration"
        return f"This sweep searched {tuned}{on}{judged}."
    parts = [f"{a} ({' vs '.join(analysis.axis_values(data, a))})" for a in compared]
    n_rungs = len(analysis.rungs(data, summaries))
    sizes = f" at {n_rungs} model sizes" if n_rungs > 1 else ""
    n_cells = len(data.cells)
    return (f"This sweep compared {_and(parts)}{on}{sizes}, {n_cells} cells in all, each at its "
            f"best tuned learning rate{judged}.")  # fmt: skip


def _evidence(data: SweepData, summaries: list[CellSummary], comps: list[stats.Comparison]) -> str:
    clauses = [_clause(c, data.direction == "minimize") for c in comps]
    if not clauses:
        body = "there is no pair of values to compare"
    elif len(clauses) <= MAX_LISTED:
        body = "; ".join(clauses)
    else:
        counts = {
            "a clear winner": sum(stats.label(c) == stats.SIGNIFICANT for c in comps),
            "no meaningful difference": sum(stats.label(c) == stats.EQUIVALENT for c in comps),
            "a lead the runs do not confirm": sum(
                stats.label(c) == stats.NOT_SIGNIFICANT for c in comps
            ),
            "no decision yet": sum(stats.label(c) == stats.INCONCLUSIVE for c in comps),
        }
        body = (f"of {len(comps)} pairs compared, "
                + _and([f"{n} show {what}" for what, n in counts.items() if n]))  # fmt: skip
    best = _best(data, summaries)
    return f"What the runs show: {body}{best}."


def _clause(c: stats.Comparison, minimize: bool) -> str:
    label = stats.label(c)
    if label == stats.SIGNIFICANT and c.diff is not None:
        a_better = (c.diff < 0) == minimize
        win, lose = (c.a, c.b) if a_better else (c.b, c.a)
        return f"{win} beats {lose} ({c.axis})"
    if label == stats.EQUIVALENT:
        return f"{c.a} and {c.b} do equally well ({c.axis})"
    if label == stats.NOT_SIGNIFICANT and c.diff is not None:
        a_better = (c.diff < 0) == minimize
        win, lose = (c.a, c.b) if a_better else (c.b, c.a)
        return f"{win} is ahead of {lose} but the runs do not confirm it ({c.axis})"
    return f"{c.a} vs {c.b} is undecided ({c.axis})"


def _best(data: SweepData, summaries: list[CellSummary]) -> str:
    if data.ladder or len(analysis.learned(summaries)) < 2:
        return ""
    found = analysis.versus_best(data, summaries)
    if found is None:
        return ""
    top, versus = found
    name = " / ".join(top.axes.get(a, "") for a in data.axes) or top.cell
    if versus and all(c.verdict == stats.SIGNIFICANT for c in versus):
        return f"; the best cell is {name}"
    return f"; {name} scores best but no single cell is best"


def _how_sure(summaries: list[CellSummary], comps: list[stats.Comparison]) -> str:
    seeds = sorted({s.quality.n for s in summaries if s.source == "seed runs"})
    if not seeds:
        return ("Not sure at all: no cell has seed runs yet (each number is one tuning run), "
                "so nothing here is a verdict.")  # fmt: skip
    runs = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}"
    if seeds[-1] < stats.MIN_RUNS:
        return (f"Not sure: with {runs} seed runs per cell no difference can be tested "
                f"(a verdict needs {stats.MIN_RUNS}), so read this as a pilot.")  # fmt: skip
    open_ = [c for c in comps if stats.label(c) in (stats.NOT_SIGNIFICANT, stats.INCONCLUSIVE)]
    family = len([c for c in comps if c.testable])
    rate = f"{100 * stats.ALPHA:.0f}%"
    corrected = f" after correcting for {family} comparisons" if family > 1 else ""
    basis = f"from {runs} seed runs per cell, each verdict allows a {rate} error rate{corrected}"
    if not comps:
        return f"Sure only of what the findings state, {basis}."
    rough = "; intervals from so few runs are rough" if seeds[0] < ROUGH_BELOW else ""
    if not open_:
        return f"Fairly sure: {basis}{rough}."
    if len(open_) == len(comps):
        return (f"Not sure yet: with {runs} seed runs per cell, none of the {len(comps)} "
                f"comparisons reaches a verdict at a {rate} error rate{corrected}; the findings "
                "below say what would settle each.")  # fmt: skip
    return (f"Partly sure: {basis}; {len(open_)} of {len(comps)} comparisons stay open "
            "(the findings below say what would settle each).")  # fmt: skip


def _and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} and {items[-1]}"

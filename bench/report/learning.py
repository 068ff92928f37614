"""Did a cell learn? Chance levels, "did not learn", and collapsed predictions.

A comparison between cells that never left chance says nothing about the
architecture, so these cells are excluded from comparisons and listed instead.

Sources, in order of trust:

- each run's ``summary.json`` ``learning.status`` (``learned`` / ``did_not_learn``
  / ``collapsed``, with a reason) written by the run against its task's baseline;
- the run's ``summary.json`` ``baseline`` (the task's chance level per metric):
  a cell whose mean objective closes less than :data:`CHANCE_MARGIN` of the gap
  between chance and perfect (loss 0, accuracy 1) did not learn;
- collapsed predictions: tuning trials that reach (nearly) the same loss at
  clearly different learning rates, near chance, learned nothing that depends
  on the learning rate: the output distribution collapsed to a constant (only
  judged when the chance level is recorded: equal losses far from chance are
  no sign of collapse).

Older sweeps record neither: their status is ``unknown`` (kept in comparisons,
said in the report).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.tasks.baseline import LOSS_MARGIN

LEARNED = "learned"
DID_NOT_LEARN = "did_not_learn"
COLLAPSED = "collapsed"
UNKNOWN = "unknown"
EXCLUDED = (DID_NOT_LEARN, COLLAPSED)

# A cell learned when its mean closes at least this fraction of the gap from chance to
# perfect: the same margin a single run must clear (for a loss, 10% below chance), so a
# cell and its runs are judged by one rule.
CHANCE_MARGIN = LOSS_MARGIN
# Collapse: two tuning trials whose learning rates differ by at least this factor ...
COLLAPSE_LR_RATIO = 2.0
# ... reach the same objective within this relative tolerance ...
COLLAPSE_REL_TOL = 0.005
# ... and lie within this fraction of chance (a loss above (1 - band) x chance), not beyond it.
COLLAPSE_BAND = 0.25


@dataclass(frozen=True)
class CellLearning:
    """The learning status of one cell, the reason in one sentence, and the chance level."""

    status: str
    reason: str
    chance: float | None = None
    collapse: str | None = None  # the collapse evidence across learning rates, if any

    @property
    def excluded(self) -> bool:
        return self.status in EXCLUDED

    @property
    def label(self) -> str:
        return self.status.replace("_", " ")


def base_metric(metric: str) -> str:
    """The metric a baseline is recorded for (``best/val/loss`` is judged as ``val/loss``)."""
    return metric.removeprefix("best/")


def chance_level(rows: list[dict[str, Any]], metric: str) -> float | None:
    """The task's chance level of ``metric`` recorded by the runs (median), or None."""
    key = base_metric(metric)
    vals = [r["baseline"][key] for r in rows if r.get("baseline") and key in r["baseline"]]
    return float(np.median(vals)) if vals else None


def gap_closed(value: float, chance: float, minimize: bool) -> float | None:
    """The fraction of the way from chance to perfect (0 loss, accuracy 1) a value reached."""
    perfect = 0.0 if minimize else 1.0
    if chance == perfect:
        return None
    return (chance - value) / (chance - perfect)


def near_chance(value: float, chance: float, minimize: bool, margin: float = CHANCE_MARGIN) -> bool:
    """True when ``value`` closed less than ``margin`` of the gap from chance to perfect."""
    closed = gap_closed(value, chance, minimize)
    return closed is not None and closed < margin


def collapse_evidence(
    points: list[tuple[float, float]], chance: float | None, minimize: bool
) -> str | None:
    """A sentence when two (lr, objective) points collapse to the same value near chance."""
    pts = sorted((lr, q) for lr, q in points if lr > 0 and math.isfinite(q))
    for i, (lr1, q1) in enumerate(pts):
        for lr2, q2 in pts[i + 1 :]:
            if lr2 / lr1 < COLLAPSE_LR_RATIO:
                continue
            if abs(q1 - q2) > COLLAPSE_REL_TOL * max(abs(q1), abs(q2), 1e-12):
                continue
            if chance is None or not near_chance(q1, chance, minimize, COLLAPSE_BAND):
                continue
            if (q1 > chance * (1 + COLLAPSE_REL_TOL)) if minimize else (q1 < chance):
                continue  # worse than chance is not a constant output: a constant does no worse
            return (f"{q1:.4g} at lr {lr1:.2g} and {q2:.4g} at lr {lr2:.2g} (chance {chance:.4g}): "
                    "the same loss at different learning rates")  # fmt: skip
    return None


def cell_learning(
    used: list[dict[str, Any]],
    values: list[float],
    tune_points: list[tuple[float, float]],
    all_rows: list[dict[str, Any]],
    metric: str,
    minimize: bool,
) -> CellLearning:
    """The status of a cell from the runs behind its numbers (``used``) and its tuning points."""
    chance = chance_level(all_rows, metric)
    collapse = collapse_evidence(tune_points, chance, minimize)
    statuses = [str((r.get("learning") or {}).get("status", "")) for r in used]
    known = [s for s in statuses if s]
    mean = float(np.mean(values)) if values else None
    if not used or mean is None:
        return CellLearning(UNKNOWN, "no finished run", chance, collapse)
    if known:
        bad = [s for s in known if s != LEARNED]
        if len(bad) * 2 > len(used):
            kind = COLLAPSED if bad.count(COLLAPSED) * 2 >= len(bad) else DID_NOT_LEARN
            first = next(
                (r["learning"].get("reason", "") for r in used
                 if (r.get("learning") or {}).get("status") == kind), "")  # fmt: skip
            return CellLearning(kind, f"{len(bad)} of {len(used)} runs {kind.replace('_', ' ')}"
                                + (f" ({first})" if first else ""), chance, collapse)  # fmt: skip
    if chance is not None and near_chance(mean, chance, minimize):
        closed = gap_closed(mean, chance, minimize) or 0.0
        near_collapse = collapse is not None
        kind = COLLAPSED if near_collapse else DID_NOT_LEARN
        return CellLearning(kind, f"mean {metric} {mean:.4g} against chance {chance:.4g}: "
                            f"closes {100 * closed:.0f}% of the gap to perfect (learning needs "
                            f"{100 * CHANCE_MARGIN:.0f}%)"
                            + (f"; collapsed predictions: {collapse}" if collapse else ""),
                            chance, collapse)  # fmt: skip
    if collapse and chance is not None and near_chance(mean, chance, minimize, COLLAPSE_BAND):
        return CellLearning(COLLAPSED, f"collapsed predictions: {collapse}", chance, collapse)
    if known:
        return CellLearning(LEARNED, f"{known.count(LEARNED)} of {len(used)} runs learned",
                            chance, collapse)  # fmt: skip
    if chance is not None:
        closed = gap_closed(mean, chance, minimize) or 0.0
        return CellLearning(LEARNED, f"mean {metric} {mean:.4g} against chance {chance:.4g} "
                            f"(closes {100 * closed:.0f}% of the gap)", chance, collapse)  # fmt: skip
    return CellLearning(UNKNOWN, "unknown: the runs record no chance baseline or learning "
                        "status (a sweep from before baselines)", None, collapse)  # fmt: skip

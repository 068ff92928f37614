"""Length generalization per cell: validation loss at each evaluated length, beside
exact match at that length, against the task's chance loss at that length.

A cell whose loss at a length is within the chance margin has not generalized
there, whatever its rank among the cells (:func:`bench.report.learning.near_chance`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.report.analysis import CellSummary
from bench.report.collect import SweepData
from bench.report.learning import near_chance

_LOSS_AT = re.compile(r"^val/loss@(\d+)$")


@dataclass(frozen=True)
class LengthPoint:
    """One cell at one evaluation length (means over the cell's runs)."""

    length: int
    loss: float
    sd: float
    n: int
    exact_match: float | None
    chance: float | None

    @property
    def at_chance(self) -> bool:
        return self.chance is not None and near_chance(self.loss, self.chance, minimize=True)


def _at_length(
    records: list[dict[str, Any]], key: str, length: int, train_length: int | None
) -> list[float]:
    """Each record's ``key@length`` (plain ``key`` stands for the training length)."""
    vals = []
    for rec in records:
        v = rec.get(f"{key}@{length}")
        if v is None and length == train_length:
            v = rec.get(key)
        if v is not None:
            vals.append(float(v))
    return vals


def _chance_at(s: CellSummary, length: int, train_length: int | None) -> float | None:
    vals = _at_length([r.get("baseline") or {} for r in s.rows], "val/loss", length, train_length)
    return float(np.median(vals)) if vals else None


def _exact_match_at(s: CellSummary, length: int, train_length: int | None) -> float | None:
    vals = _at_length([r["metrics"] for r in s.rows], "val/exact_match", length, train_length)
    return float(np.mean(vals)) if vals else None


def lengths_of(s: CellSummary) -> list[int]:
    """The evaluation lengths some run of the cell logged val/loss@L for."""
    return sorted(
        {int(m.group(1)) for r in s.rows for k in r["metrics"] if (m := _LOSS_AT.match(k))}
    )


def cell_points(data: SweepData, s: CellSummary) -> list[LengthPoint]:
    """The cell's loss, exact match and chance at each evaluated length, shortest first."""
    out = []
    for length in lengths_of(s):
        vals = [r["metrics"][f"val/loss@{length}"] for r in s.rows
                if f"val/loss@{length}" in r["metrics"]]  # fmt: skip
        arr = np.asarray(vals, dtype=float)
        out.append(LengthPoint(
            length, float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, len(arr),
            _exact_match_at(s, length, data.train_length),
            _chance_at(s, length, data.train_length),
        ))  # fmt: skip
    return out

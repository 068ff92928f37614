"""What a diagnosis rule reads and what it says: :class:`RunRecords` and :class:`Rule`.

Pure Python (stdlib and :mod:`bench.config`), so the report and ``bench status``
read diagnoses without torch. A rule reads a run's records (``metrics.csv``
series, the resolved config, ``summary.json``) and, when the measurements point
to a known failure, returns its *evidence*: one sentence with the numbers. The
rule's class says which records it reads, the paper the failure is described in
and what to try.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.run import Run

Series = list[tuple[int, float]]  # (step, value), in step order, finite values only


@dataclass(frozen=True)
class RunRecords:
    """One run's records as the rules read them.

    ``rows``: ``metrics.csv`` as float rows (with ``step``); ``config``: the flat
    resolved RunConfig (``train.lr``, ``task.batch_size``, ...); ``summary``:
    ``summary.json`` (or the in-memory summary at the end of ``train_run``);
    ``status``: completed / diverged / stopped / ...
    """

    rows: Sequence[Mapping[str, float]] = ()
    config: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    status: str = ""

    @classmethod
    def from_run_dir(cls, run_dir: Path, summary: Mapping[str, Any] | None = None) -> RunRecords:
        """Read a run directory (anything missing reads as empty)."""
        run = Run.load(run_dir)
        if summary is None:
            summary = run.summary
        status = str(summary.get("status") or run.status.get("status", "unknown"))
        return cls(run.history(), run.flat_config(), summary, status)

    def series(self, key: str) -> Series:
        """The finite values logged for ``key``, one per step (the last one logged wins)."""
        by_step: dict[int, float] = {}
        for row in self.rows:
            v = row.get(key)
            if v is not None and "step" in row and math.isfinite(v):
                by_step[int(row["step"])] = v
        return sorted(by_step.items())

    def keys(self, prefix: str) -> list[str]:
        """Logged keys starting with ``prefix``, sorted."""
        return sorted({k for row in self.rows for k in row if k.startswith(prefix)})

    @property
    def total_steps(self) -> int:
        """The steps the run was meant to take (``train.max_steps``), else the last logged."""
        planned = self.config.get("train.max_steps")
        if isinstance(planned, int) and planned > 0:
            return planned
        return max((int(r["step"]) for r in self.rows if "step" in r), default=0)

    def chance_loss(self) -> float | None:
        """The task's chance-level val/loss (``summary.json`` ``baseline``), if recorded."""
        return self._baseline("val/loss")

    def uniform_loss(self) -> float | None:
        """The loss of a prediction uniform over the vocabulary, ln(vocab size): what a
        model that knows nothing scores (``summary.json`` ``baseline``), if recorded."""
        return self._baseline("uniform/val/loss")

    def _baseline(self, key: str) -> float | None:
        v = (self.summary.get("baseline") or {}).get(key)
        return float(v) if isinstance(v, int | float) and math.isfinite(v) else None

    def non_finite_loss(self) -> bool:
        """Did training diverge (status, or a non-finite train/loss in the records)?"""
        if self.status == "diverged":
            return True
        return any("train/loss" in r and not math.isfinite(r["train/loss"]) for r in self.rows)


def window(series: Series, last_step: float) -> Series:
    """The points at or before ``last_step``."""
    return [(s, v) for s, v in series if s <= last_step]


def median(values: Iterable[float]) -> float:
    vs = [v for v in values if math.isfinite(v)]
    return statistics.median(vs) if vs else math.nan


def layer_of(key: str) -> str:
    """``cond/attn_entropy/layer_0`` -> ``layer_0``; ``.../dec_layer_1/cross`` -> ``dec_layer_1/cross``."""
    return key.split("/", 2)[2]


DIAGNOSIS, WATCH = "diagnosis", "watch"
KINDS = (DIAGNOSIS, WATCH)


@dataclass(frozen=True)
class Diagnosis:
    """A rule that fired on a run: what it is, the evidence, the paper and what to try.

    ``kind``: ``diagnosis`` when the run shows a symptom of bad training
    (:func:`bench.diagnoses.symptoms.symptom`) and the rule's measured precision and
    recall clear the bar (:mod:`bench.diagnoses.measured`); else ``watch``: a risk seen
    in the measurements, with no advice to change the run. ``why``: the symptom that
    makes it a diagnosis, or why it is only a watch. Records written before the gate
    have neither field and read as diagnoses.
    """

    rule: str
    title: str
    evidence: str
    paper: str
    advice: str
    kind: str = DIAGNOSIS
    why: str = ""

    @property
    def is_watch(self) -> bool:
        return self.kind == WATCH

    def as_dict(self) -> dict[str, str]:
        return {
            "rule": self.rule,
            "title": self.title,
            "evidence": self.evidence,
            "paper": self.paper,
            "advice": self.advice,
            "kind": self.kind,
            "why": self.why,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Diagnosis:
        rule, title, evidence, paper, advice = (
            str(d.get(k, "")) for k in ("rule", "title", "evidence", "paper", "advice")
        )
        kind = str(d.get("kind") or DIAGNOSIS)
        kind = kind if kind in KINDS else DIAGNOSIS
        return cls(rule, title, evidence, paper, advice, kind, str(d.get("why", "")))

    def line(self) -> str:
        """One line, for terminals and tables: ``title: evidence; try advice`` for a
        diagnosis, ``title (watch): evidence (why)`` for a watch (no advice)."""
        if self.is_watch:
            why = f" ({self.why})" if self.why else ""
            return f"{self.title} (watch): {self.evidence}{why}"
        return f"{self.title}: {self.evidence}; try {self.advice}"


def fmt(x: float) -> str:
    """A number for a sentence: 3 significant digits."""
    return f"{x:.3g}"

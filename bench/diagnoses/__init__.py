"""Diagnoses: rules that read a run's records and say why it trains badly.

A rule's finding is a *diagnosis* (with advice) only when the run shows a symptom of
bad training (:mod:`bench.diagnoses.symptoms`: diverged, did not learn, plateau at
chance, unrecovered loss spike) and the rule's measured precision and recall clear the
bar (:mod:`bench.diagnoses.measured`, docs/diagnoses.md); otherwise a *watch*: a risk
seen in the measurements, with no advice to change the run.

Each rule (a :class:`~bench.diagnoses.base.Rule` in :data:`RULES`)
names the records it reads, fires on a stated condition with named threshold
constants (each with a comment on where it comes from), prints its evidence with
the numbers, cites its paper and says what to try. :func:`diagnose` runs every
rule on a :class:`RunRecords`; a rule that raises is skipped with a warning: a
diagnosis never fails a run, a report or a status listing.

Pure Python: the report and ``bench status`` import it without torch.

Where they appear: the end of ``bench train`` and ``summary.json`` ``diagnoses``
(:func:`bench.training.run.train_run`), W&B summary keys ``diagnosis/<rule>`` and an alert
when online (:mod:`bench.tracking`), per cell in ``bench report``
(:mod:`bench.report.diagnoses`) and in ``bench status`` for finished trials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from bench.diagnoses.attention import (
    AttentionLogitGrowth,
    EntropyCollapse,
    UniformAttention,
)
from bench.diagnoses.base import DIAGNOSIS, WATCH, Diagnosis, RunRecords
from bench.diagnoses.loss import ChancePlateau, LossSpikes, OutputLogitDivergence
from bench.diagnoses.optimization import (
    BatchVsNoiseScale,
    IllConditionedDepth,
    SharpnessVsLearningRate,
    UpdateSize,
)
from bench.diagnoses.rule import Rule

log = logging.getLogger("bench.diagnostics")

# name -> rule, in the order diagnoses are listed (causes before symptoms).
RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        UniformAttention(),
        IllConditionedDepth(),
        EntropyCollapse(),
        AttentionLogitGrowth(),
        OutputLogitDivergence(),
        UpdateSize(),
        SharpnessVsLearningRate(),
        BatchVsNoiseScale(),
        LossSpikes(),
        ChancePlateau(),
    )
}

__all__ = [
    "DIAGNOSIS",
    "RULES",
    "WATCH",
    "Diagnosis",
    "Rule",
    "RunRecords",
    "diagnose",
    "diagnose_run",
    "lines",
    "split",
]


def _warn(name: str, error: Exception) -> None:
    log.warning("diagnosis rule %s failed: %s: %s", name, type(error).__name__, error)


def diagnose(
    rec: RunRecords,
    rules: Mapping[str, Rule] | None = None,
    on_error: Callable[[str, Exception], None] = _warn,
    gated: bool = True,
) -> list[Diagnosis]:
    """Every rule that fires on ``rec``, in :data:`RULES` order, each a diagnosis or a
    watch (``gated=False``: every finding a diagnosis, see :meth:`Rule.diagnose`).

    A rule that raises is skipped and reported to ``on_error(name, error)`` (by
    default a logged warning; ``train_run`` records it in ``diagnostic_errors``).
    """
    found = []
    for name, rule in (rules or RULES).items():
        try:
            d = rule.diagnose(rec, gated)
        except Exception as e:  # a diagnosis never fails what asked for it
            on_error(name, e)
            continue
        if d is not None:
            found.append(d)
    return found


def diagnose_run(run_dir: Path, summary: Mapping[str, Any] | None = None) -> list[Diagnosis]:
    """The diagnoses and watches of a run directory: ``summary.json`` ``diagnoses`` when
    recorded with their kind, else worked out from its records (runs that diverged, or
    that predate the rules or the symptom gate: their records read the same)."""
    run_dir = Path(run_dir)
    try:
        rec = RunRecords.from_run_dir(run_dir, summary)
    except Exception as e:
        log.warning("cannot read the records of %s: %s", run_dir, e)
        return []
    recorded = rec.summary.get("diagnoses")
    if isinstance(recorded, list) and all(
        isinstance(d, Mapping) and d.get("kind") for d in recorded
    ):
        return [Diagnosis.from_dict(d) for d in recorded]
    return diagnose(rec)


def split(found: Iterable[Diagnosis]) -> tuple[list[Diagnosis], list[Diagnosis]]:
    """``(diagnoses, watches)`` of a run's findings, each in rule order."""
    found = list(found)
    return [d for d in found if not d.is_watch], [d for d in found if d.is_watch]


def lines(diagnoses: Iterable[Diagnosis]) -> list[str]:
    """One line per diagnosis (``title: evidence; try advice``)."""
    return [d.line() for d in diagnoses]

"""Why a cell trains as it does: the diagnoses of the runs behind its numbers.

Each run's diagnoses come from its ``summary.json`` (``diagnoses``), or are worked
out from its records when it has none (a run that diverged, or one from before
the rules): :func:`bench.diagnoses.diagnose_run`. A cell lists each
rule that fired in any of its runs once, with how many of its runs it fired in
and the evidence of the first, next to the cell's learning status: under
*diagnoses* when it was a diagnosis (the run showed a symptom, with advice) in at
least one run, else under *watches* (a risk seen in runs that trained fine, no
advice; :mod:`bench.diagnoses.symptoms`). A cell none of whose runs finished (all
pruned or diverged) is read from every trial it ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.diagnoses import RULES, Diagnosis, diagnose_run

if TYPE_CHECKING:
    from bench.report.analysis import CellSummary
    from bench.report.collect import SweepData


@dataclass(frozen=True)
class CellDiagnosis:
    """One rule that fired in a cell: in ``runs`` of its ``of`` runs; the evidence of the
    first run where it was a diagnosis (else of the first where it was a watch)."""

    diagnosis: Diagnosis
    runs: int
    of: int

    @property
    def is_watch(self) -> bool:
        return self.diagnosis.is_watch

    def text(self) -> str:
        d = self.diagnosis
        head = f"{d.title} ({self.runs} of {self.of} runs): {d.evidence}"
        if d.is_watch:
            return f"{head} ({d.why})" if d.why else head
        return f"{head}; try {d.advice}"


def cell_diagnoses(s: CellSummary) -> list[CellDiagnosis]:
    """Every rule that fired in the runs behind a cell's numbers, in rule order; a cell
    with no such run (every trial pruned, diverged or failed) is read from all its trials.
    A rule that was a diagnosis in any run is one for the cell (its first such run's
    evidence), otherwise a watch."""
    rows = s.rows or s.trials
    dirs = [Path(r["run_dir"]) for r in rows if r.get("run_dir")]
    per_run = [diagnose_run(d) for d in dirs if d.is_dir()]
    found: dict[str, tuple[Diagnosis, int]] = {}
    for run in per_run:
        for d in run:
            first, n = found.get(d.rule, (d, 0))
            found[d.rule] = (d if first.is_watch and not d.is_watch else first, n + 1)
    order = {name: i for i, name in enumerate(RULES)}
    ranked = sorted(found.items(), key=lambda kv: order.get(kv[0], len(order)))
    return [CellDiagnosis(d, n, len(per_run)) for _, (d, n) in ranked]


def diagnosis_rows(data: SweepData, summaries: list[CellSummary]) -> list[dict[str, object]]:
    """Per cell: its name (``post / learned``), learning status, diagnoses and watches."""
    out: list[dict[str, object]] = []
    for s in summaries:
        name = " / ".join(str(s.axes.get(a, "")) for a in data.axes) if data.axes else s.cell
        found = cell_diagnoses(s)
        out.append(
            {
                "cell": name,
                "learning": s.learning.label,
                "diagnoses": [f.text() for f in found if not f.is_watch],
                "watches": [f.text() for f in found if f.is_watch],
                "titles": ", ".join(f.diagnosis.title for f in found if not f.is_watch) or "–",
            }
        )
    return out

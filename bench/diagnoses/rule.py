"""A diagnosis rule: what it reads, its paper and advice, and the symptom gate.

:class:`Rule` lives apart from :mod:`bench.diagnoses.base` because its gate reads the
run's symptoms (:mod:`bench.diagnoses.symptoms`), which read the records of
:mod:`bench.diagnoses.base` themselves.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from bench.diagnoses.base import WATCH, Diagnosis, RunRecords
from bench.diagnoses.measured import demotion
from bench.diagnoses.symptoms import no_symptom, symptom


class Rule:
    """One diagnosis. Subclasses set the class attributes and implement :meth:`evidence`.

    ``reads``: the record keys the rule reads (``{layer}``/``{block}`` stand for
    every layer or block; ``config:``/``summary:`` name config fields and
    summary entries). :meth:`evidence` returns one sentence with the numbers
    when the rule fires, else None; :meth:`advise` what to try (by default the
    class's ``advice``; a rule may tailor it to the run's config).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    reads: ClassVar[tuple[str, ...]]
    paper: ClassVar[str]
    advice: ClassVar[str]

    def evidence(self, rec: RunRecords) -> str | None:
        raise NotImplementedError

    def advise(self, rec: RunRecords) -> str:
        return self.advice

    def diagnose(self, rec: RunRecords, gated: bool = True) -> Diagnosis | None:
        """The rule's finding on ``rec``, or None. ``gated`` (the default): a *diagnosis*
        only when the run shows a symptom and the rule is not demoted by its measured
        figures, else a *watch*; ``gated=False``: always a diagnosis (what the
        measurement of the rule itself, ``tools/diagnosis_eval.py``, reads)."""
        found = self.evidence(rec)
        if found is None:
            return None
        d = Diagnosis(self.name, self.title, found, self.paper, self.advise(rec))
        if not gated:
            return d
        shown = symptom(rec)
        demoted = demotion(self.name)
        if shown is None:
            return replace(d, kind=WATCH, why=no_symptom(rec))
        if demoted is not None:
            return replace(d, kind=WATCH, why=f"{shown}; but {demoted}")
        return replace(d, why=shown)

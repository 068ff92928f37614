"""A sweep's studies and trials, read one way for every reader.

:func:`load_studies` finds the studies a spec plans in a storage;
:func:`read_trial` turns one Optuna trial into a :class:`TrialRecord`: the
facts the worker recorded about it (cell, phase, seed, outcome and its reason,
run directory, parameters, values, final metrics). ``bench report``
(:mod:`bench.report.collect`) adds what the run directory holds; the sweep-level
W&B run (:mod:`bench.sweeps.progress.wandb_run`) logs the records as its trials table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from bench.sweeps.spec import SweepSpec
from bench.sweeps.study import DISCARDED, outcome, plan, seed_study_name


def study_names(spec: SweepSpec) -> list[str]:
    """Every study of the sweep, in spec order: each cell's tuning (or the search), then seeds."""
    return [c.study for c in plan(spec)] + ([seed_study_name(spec)] if spec.seeds else [])


def load_studies(storage: optuna.storages.BaseStorage, spec: SweepSpec) -> dict[str, optuna.Study]:
    """The studies of :func:`study_names` that the storage holds (name -> study)."""
    present = set(optuna.get_all_study_names(storage))
    return {
        name: optuna.load_study(study_name=name, storage=storage)
        for name in study_names(spec)
        if name in present
    }


@dataclass(frozen=True)
class TrialRecord:
    """What a sweep recorded about one trial (its user attributes, with defaults)."""

    study: str
    number: int
    state: str  # Optuna's TrialState name
    outcome: str  # complete, pruned, diverged, failed, running, waiting, surplus, ...
    cell: str
    phase: str  # tune / search / seed
    seed: int | None  # None: not recorded (a trial still waiting)
    reason: str
    run_dir: str  # as recorded ('' when none)
    params: dict[str, Any]  # tuned values; a seed run's fixed overrides
    values: tuple[float, ...] | None
    metrics: dict[str, Any]  # the final metrics the trial reported
    duration_s: float | None
    last_step: int | None  # the last step it reported (intermediate values, else its reason)
    source: str | None  # a seed run: the tuning trial (``study#number``) it re-runs
    discarded: bool  # given back by a worker (surplus / duplicate): holds no slot

    @property
    def status(self) -> str:
        """The outcome in the words of run directories: ``completed`` for ``complete``."""
        return "completed" if self.outcome == "complete" else self.outcome


def read_trial(study_name: str, t: FrozenTrial) -> TrialRecord:
    """One trial of ``study_name`` as a record."""
    a = t.user_attrs
    reason = str(a.get("reason", "") or "")
    seed = a.get("seed")
    return TrialRecord(
        study=study_name,
        number=t.number,
        state=t.state.name,
        outcome=outcome(t),
        cell=str(a.get("cell") or study_name.split("/tune/")[-1]),
        phase=str(a.get("phase") or ("seed" if study_name.endswith("/seeds") else "tune")),
        seed=seed if isinstance(seed, int) else None,
        reason=reason,
        run_dir=str(a.get("run_dir", "") or ""),
        params=_params(t),
        values=tuple(float(v) for v in t.values) if t.values else None,
        metrics=dict(a.get("metrics") or {}),
        duration_s=t.duration.total_seconds() if t.duration else None,
        last_step=_last_step(t, reason),
        source=a.get("source"),
        discarded=a.get("status") in DISCARDED,
    )


def _params(t: FrozenTrial) -> dict[str, Any]:
    """The trial's parameters, else a seed run's fixed overrides ({} when unreadable)."""
    if t.params or "overrides" not in t.user_attrs:
        return dict(t.params)
    try:
        overrides = json.loads(t.user_attrs["overrides"])
    except (TypeError, ValueError):
        return {}
    return overrides if isinstance(overrides, dict) else {}


def _last_step(t: FrozenTrial, reason: str) -> int | None:
    """The last step a trial reported (Optuna's intermediate values, else its reason)."""
    if t.intermediate_values:
        return int(max(t.intermediate_values))
    m = re.search(r"\bstep (\d+)", reason)
    return int(m.group(1)) if m else None

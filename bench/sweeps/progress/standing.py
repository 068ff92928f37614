"""Where a sweep stands: per cell and phase, its tally, best value and time left; and what went wrong.

Read by ``bench status``, the live table of ``bench sweep`` and the end-of-sweep
check (:func:`failed_cells`: every trial of a cell failed). Tallies and slots are
:mod:`bench.sweeps.study`'s.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench.sweeps.spec import SweepSpec
from bench.sweeps.study import (
    DISCARDED,
    FINISHED,
    Tally,
    is_current_seed_run,
    latest_by_slot,
    load_study,
    outcome,
    plan,
    seed_sources,
    seed_study_name,
    tally,
)

# ----------------------------------------------------------------------------- progress


@dataclass
class CellStatus:
    """One row of the progress table."""

    study: str
    cell: str
    phase: str
    budget: int | None
    tally: Tally
    best: float | None
    eta: float | None  # seconds


def best_value(study: optuna.Study, multi: bool) -> float | None:
    if multi:
        return None
    try:
        return float(study.best_value)
    except ValueError:  # nothing complete yet
        return None


def eta_seconds(t: Tally, budget: int | None, workers: int | None = None) -> float | None:
    """Remaining slots x mean trial time / parallelism (running trials, else 1 worker)."""
    if budget is None or not t.durations:
        return None
    remaining = max(budget - t.done, 0)
    if remaining == 0:
        return 0.0
    parallel = max(workers or t["running"] or 1, 1)
    return math.ceil(remaining / parallel) * (sum(t.durations) / len(t.durations))


def sweep_status(
    storage: optuna.storages.BaseStorage, spec: SweepSpec, workers: int | None = None
) -> list[CellStatus]:
    """Progress of every cell's tuning and of the seed phase."""
    rows = []
    for cell in plan(spec):
        study = load_study(storage, cell.study)
        counts = tally(study.get_trials(deepcopy=False))
        best = best_value(study, spec.multi_objective)
        phase = "search" if spec.search is not None else "tune"
        rows.append(
            CellStatus(
                cell.study,
                cell.key,
                phase,
                cell.budget,
                counts,
                best,
                eta_seconds(counts, cell.budget, workers),
            )
        )
    if spec.seeds:
        study = load_study(storage, seed_study_name(spec))
        by_cell: dict[str, list[FrozenTrial]] = {}
        sources = seed_sources(storage, spec)
        for t in study.get_trials(deepcopy=False):
            if not is_current_seed_run(t, sources):
                continue
            if "cell" in t.user_attrs:  # trials given back before taking a job have none
                by_cell.setdefault(str(t.user_attrs["cell"]), []).append(t)
        for cell_name, trials in by_cell.items():
            counts = tally(trials)
            best = _mean_value(trials)
            rows.append(
                CellStatus(
                    study.study_name,
                    cell_name,
                    "seed",
                    spec.seeds,
                    counts,
                    best,
                    eta_seconds(counts, spec.seeds, workers),
                )
            )
    return rows


def _mean_value(trials: Sequence[FrozenTrial]) -> float | None:
    """Mean first objective over a cell's completed seed runs (the table's "best" column)."""
    values = [t.values[0] for t in trials if t.state == TrialState.COMPLETE and t.values]
    return sum(values) / len(values) if values else None


# ----------------------------------------------------------------------------- failures


@dataclass(frozen=True)
class Problem:
    """A finished trial that did not complete, with its recorded reason."""

    cell: str
    phase: str
    number: int
    outcome: str  # failed | invalid | pruned | diverged
    reason: str
    params: dict[str, Any]


def problems(storage: optuna.storages.BaseStorage, spec: SweepSpec) -> list[Problem]:
    """Every failed, pruned or diverged trial of the sweep (the newest try of each slot)."""
    names = [(c.key, c.study) for c in plan(spec)]
    if spec.seeds:
        names.append(("", seed_study_name(spec)))
    out = []
    for key, name in names:
        study = load_study(storage, name)
        for t in latest_by_slot(study.get_trials(deepcopy=False)).values():
            o = outcome(t)
            if o not in ("failed", "pruned", "diverged"):
                continue
            status = str(t.user_attrs.get("status") or o)
            out.append(
                Problem(
                    key or str(t.user_attrs.get("cell", "?")),
                    str(t.user_attrs.get("phase", "seed" if not key else "tune")),
                    t.number,
                    "invalid" if status == "invalid" else o,
                    str(t.user_attrs.get("reason") or "no reason recorded"),
                    dict(t.params),
                )
            )
    return out


def failed_cells(storage: optuna.storages.BaseStorage, spec: SweepSpec) -> dict[str, str]:
    """cell -> first error, for every cell whose finished tuning trials all failed."""
    out: dict[str, str] = {}
    for cell in plan(spec):
        slots = latest_by_slot(load_study(storage, cell.study).get_trials(deepcopy=False))
        finished = [
            t for t in slots.values() if t.state in FINISHED and outcome(t) not in DISCARDED
        ]
        if finished and all(t.state == TrialState.FAIL for t in finished):
            first = min(finished, key=lambda t: t.number)
            out[cell.key] = str(first.user_attrs.get("reason") or "no reason recorded")
    return out

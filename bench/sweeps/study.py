"""Studies, cells, budgets and the seed phase.

Layout in the storage (one sweep = several studies, names prefixed by the sweep):

- ``{name}/tune/{cell}``: compare mode, one study per cell, tuned with ``tune``;
- ``{name}/search``: search mode, one study over architecture and hyperparameters;
- ``{name}/seeds``: the seed phase; each trial re-runs a cell's best configuration
  with one seed (enqueued, fixed overrides in the ``overrides`` user attr).

Budgets count *slots*: a trial and its retries (Optuna's retry convention:
``system_attrs["failed_trial"]`` names the original) share one slot, so a trial
retried after its worker died is not counted twice. A slot counts once it exists,
except slots marked ``surplus``/``duplicate`` (a worker lost a race and gave its
trial back). A completed trial never runs again: only FAIL trials are retried.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bench.sweeps import tuning
from bench.sweeps.recovery.resume import holds_slot
from bench.sweeps.spec import Direction, SweepSpec, build_cell_config, cell_key

DISCARDED = frozenset({"surplus", "duplicate"})  # statuses of trials that hold no slot
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def tune_study_name(spec: SweepSpec, cell: str) -> str:
    """The study that tunes one cell (compare) or the single search study."""
    return f"{spec.name}/search" if spec.search is not None else f"{spec.name}/tune/{cell}"


def seed_study_name(spec: SweepSpec) -> str:
    return f"{spec.name}/seeds"


def directions(spec: SweepSpec) -> list[Direction]:
    return [o.direction for o in spec.objectives]


@dataclass(frozen=True)
class Cell:
    """One unit of tuning: its key, its axis overrides, its study and its trial budget."""

    key: str
    overrides: dict[str, Any]
    study: str
    budget: int


def plan(spec: SweepSpec) -> list[Cell]:
    """Every tuning cell of the sweep, in spec order (with ``scale.tune: smallest``, the
    cells of the smallest rung only: the others re-run those cells' best settings)."""
    n = spec.trials_per_cell()
    if spec.search is not None and spec.budget.trials is not None:
        n = min(n, spec.budget.trials)
    source = spec.tuning_source()
    return [Cell(k, o, tune_study_name(spec, k), n) for k, o in spec.cells() if source[k] == k]


def create_studies(storage: optuna.storages.BaseStorage, spec: SweepSpec) -> None:
    """Create every study of the sweep (idempotent: existing studies are kept).

    With the ``auto`` sampler in compare mode, each cell study also gets the
    deterministic tuning points enqueued once (see :mod:`bench.sweeps.tuning`).
    """
    names = [c.study for c in plan(spec)] + ([seed_study_name(spec)] if spec.seeds else [])
    for name in names:
        optuna.create_study(
            storage=storage, study_name=name, directions=directions(spec), load_if_exists=True
        )
    if tuning.method(spec) in ("grid", "qmc"):
        pts = tuning.points(spec.space, spec.seed)  # type: ignore[arg-type]
        for cell in plan(spec):
            enqueue_points(load_study(storage, cell.study), pts, tuning.method(spec))


def enqueue_points(study: optuna.Study, pts: Sequence[dict[str, Any]], how: str) -> int:
    """Enqueue the tuning points a cell study does not hold yet; returns how many were added.

    Each point is a job (``point{i}``): two processes preparing the sweep at once may
    both enqueue it, and the later copy is given back as ``duplicate`` when popped.
    """
    present = {t.user_attrs.get("job") for t in study.get_trials(deepcopy=False)}
    added = 0
    for i, params in enumerate(pts):
        job = f"point{i}"
        if job in present:
            continue
        study.enqueue_trial(
            params=dict(params),
            user_attrs={"job": job, "point": i, "tuning": how},
            skip_if_exists=False,
        )
        added += 1
    return added


def load_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


# ----------------------------------------------------------------------------- slots


def slot_of(t: FrozenTrial) -> int:
    """The number of the original trial this one retries (itself when it is no retry)."""
    return int(t.system_attrs.get("failed_trial", t.number))


def latest_by_slot(trials: Iterable[FrozenTrial]) -> dict[int, FrozenTrial]:
    """slot -> its newest trial (a retry supersedes the failed trial it replaces)."""
    out: dict[int, FrozenTrial] = {}
    for t in trials:
        s = slot_of(t)
        if s not in out or t.number > out[s].number:
            out[s] = t
    return out


def outcome(t: FrozenTrial) -> str:
    """What happened to a trial: complete, pruned, diverged, failed, running, waiting, ..."""
    status = t.user_attrs.get("status")
    if t.state == TrialState.RUNNING:
        return "running"
    if t.state == TrialState.WAITING:
        return "waiting"
    if status in DISCARDED or status == "diverged":
        return str(status)
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(t.state, "failed")


@dataclass
class Tally:
    """Counts of a study's slots by outcome, and what the budget has used."""

    counts: dict[str, int] = field(default_factory=dict)
    used: int = 0  # slots that count against the budget
    retries_waiting: int = 0  # WAITING retries and preempted trials: they hold their slot already
    durations: list[float] = field(default_factory=list)

    def __getitem__(self, key: str) -> int:
        return self.counts.get(key, 0)

    @property
    def done(self) -> int:
        return sum(self[k] for k in ("complete", "pruned", "diverged", "failed"))

    @property
    def active(self) -> int:
        return self["running"] + self["waiting"]


def tally(trials: Sequence[FrozenTrial], below: int | None = None) -> Tally:
    """Tally the slots of ``trials`` (only those numbered below ``below``, if given)."""
    if below is not None:
        trials = [t for t in trials if t.number < below]
    out = Tally()
    for t in latest_by_slot(trials).values():
        o = outcome(t)
        out.counts[o] = out.counts.get(o, 0) + 1
        retry = holds_slot(t)  # a retry or a preempted trial: its slot is taken already
        if o == "waiting" and retry:
            out.retries_waiting += 1
        # An enqueued job (a tuning point, a seed run) takes its slot when it starts.
        if o not in DISCARDED and (o != "waiting" or retry):
            out.used += 1
        if t.state in FINISHED and o not in DISCARDED and t.datetime_start and t.datetime_complete:
            out.durations.append((t.datetime_complete - t.datetime_start).total_seconds())
    return out


def best_trials(study: optuna.Study, multi: bool) -> list[FrozenTrial]:
    """The best completed trial (single objective) or the Pareto front (multi)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return []
    return list(study.best_trials) if multi else [study.best_trial]


# ----------------------------------------------------------------------------- seed phase


@dataclass(frozen=True)
class SeedJob:
    """One seed re-run of a cell's best configuration."""

    cell: str
    seed: int
    overrides: dict[str, Any]
    source: str  # "study#trial" the configuration came from

    @property
    def key(self) -> str:
        return f"{self.cell}|seed={self.seed}"


def seed_values(spec: SweepSpec) -> list[int]:
    """Fresh seeds after the tuning seed: re-using it would re-measure the selected run."""
    base = build_cell_config(spec, {}, "base").train.seed
    return [base + 1 + i for i in range(spec.seeds or 0)]


def seed_jobs(storage: optuna.storages.BaseStorage, spec: SweepSpec) -> list[SeedJob]:
    """Every seed run the finished tuning calls for (empty for a cell with nothing complete).

    A cell tuned elsewhere (a larger rung under ``scale.tune: smallest``) re-runs the
    best setting of the cell it takes its tuning from, with its own overrides."""
    jobs: list[SeedJob] = []
    seeds = seed_values(spec)
    tuned = {c.key: c for c in plan(spec)}
    bests = {
        key: best_trials(load_study(storage, c.study), spec.multi_objective)
        for key, c in tuned.items()
    }
    targets = list(spec.cells()) if spec.search is None else [(k, {}) for k in tuned]
    source_of = spec.tuning_source()
    for key, cell_overrides in targets:
        cell = tuned[source_of.get(key, key)]
        for best in bests[cell.key]:
            overrides = {**cell.overrides, **cell_overrides, **best.params}
            label = key
            if spec.search is not None:
                arch = {k: v for k, v in best.params.items() if k.startswith("model.")}
                label = cell_key(arch) if arch else "search"
                if spec.multi_objective:
                    label = f"{label}#t{best.number}"
            source = f"{cell.study}#{best.number}"
            jobs += [SeedJob(label, s, overrides, source) for s in seeds]
    return jobs


def enqueue_missing_seed_jobs(study: optuna.Study, jobs: Sequence[SeedJob]) -> int:
    """Enqueue each job not yet in the seed study; returns how many were added.

    Two workers may both enqueue a job; the later copy is discarded when popped
    (see :func:`is_duplicate`), so this needs no lock.
    """
    present = {
        (t.user_attrs.get("job"), t.user_attrs.get("source"))
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("status") not in DISCARDED
    }
    added = 0
    for job in jobs:
        if (job.key, job.source) in present:  # a new best (the sweep grew): a new job
            continue
        study.enqueue_trial(
            params={},
            user_attrs={
                "job": job.key,
                "cell": job.cell,
                "seed": job.seed,
                "phase": "seed",
                "overrides": json.dumps(job.overrides, sort_keys=True),
                "source": job.source,
            },
            skip_if_exists=False,
        )
        added += 1
    return added


def seed_sources(storage: optuna.storages.BaseStorage, spec: SweepSpec) -> set[str]:
    """The tuning trials (``study#number``) whose configurations the seed phase runs now.

    A seed run of any other source ran an earlier best of its cell, before more
    tuning trials found a better one (the sweep grew): it is superseded.
    """
    if not spec.seeds:
        return set()
    return best_sources({c.study: load_study(storage, c.study) for c in plan(spec)}, spec)


def best_sources(tuning: Mapping[str, optuna.Study], spec: SweepSpec) -> set[str]:
    """``study#number`` of each tuning study's best trial(s): the configurations seeds re-run."""
    return {
        f"{name}#{t.number}"
        for name, study in tuning.items()
        for t in best_trials(study, spec.multi_objective)
    }


def is_current_seed_run(t: FrozenTrial, sources: set[str]) -> bool:
    source = t.user_attrs.get("source")
    return source is None or source in sources


def is_duplicate(trials: Sequence[FrozenTrial], mine: FrozenTrial) -> bool:
    """True when another slot with a lower number already holds ``mine``'s job (and source)."""
    job, source, slot = mine.user_attrs.get("job"), mine.user_attrs.get("source"), slot_of(mine)
    return any(
        t.user_attrs.get("job") == job
        and t.user_attrs.get("source") == source
        and slot_of(t) < slot
        and t.user_attrs.get("status") not in DISCARDED
        for t in trials
    )

"""One trial: Optuna trial -> RunConfig -> ``train_run`` -> values told to the study.

The trial's user attributes record what the report needs: ``cell``, ``phase``,
``seed``, ``run_dir``, ``status`` (completed / pruned / diverged / failed /
interrupted / invalid), ``reason``, ``metrics`` and the ``worker``.
Outcome -> Optuna state: completed -> COMPLETE; pruned and diverged -> PRUNED
(a diverged run is a bad configuration, not a broken worker); failed / invalid
-> FAIL; failed on a full disk, interrupted -> FAIL and re-enqueued, so a rerun resumes it; preempted ->
back to WAITING, same number, resumed from its checkpoint (``resume.py``).
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from bench import records
from bench.config import ConfigError, RunConfig, dump_yaml
from bench.sweeps.ddp import PRUNE_METRIC_ENV, TRIAL_CONFIG_ENV, ddp_isolated
from bench.sweeps.labels import axis_attrs, set_seed_params
from bench.sweeps.layout import Sweep
from bench.sweeps.pruning import PruningCallback
from bench.sweeps.recovery.resume import prepare_run_dir, start_over
from bench.sweeps.recovery.retry import fail_trial
from bench.sweeps.space import suggest
from bench.sweeps.spec import SweepSpec, build_cell_config

if TYPE_CHECKING:
    from bench.sweeps.slurm.ddp_tasks import Leader
    from bench.training.finish import RunResult


@dataclass
class TrialJob:
    """A claimed trial and what it is for."""

    study: optuna.Study
    trial: optuna.Trial
    phase: str  # tune | search | seed
    cell: str
    overrides: dict[str, Any]  # cell axes (tune) or the fixed best config (seed)
    seed: int | None = None  # seed phase: the seed to run
    tags: list[str] = field(default_factory=list)


DISK_FULL = "disk full"  # execute's outcome when the run failed on a full disk (retried)


class Interrupted(KeyboardInterrupt):
    """The worker was asked to stop while a trial ran; the trial has been re-enqueued."""


def trial_config(
    sweep: Sweep,
    job: TrialJob,
    params: dict[str, Any],
    threads: int | None,
    layout: dict[str, int] | None = None,
):
    """The RunConfig of a trial: base + its phase's settings (``phases``) + cell/fixed
    overrides + sampled params + tracking.

    ``layout``: ``train.nodes`` / ``train.devices`` of a worker of several Slurm tasks.
    """
    spec = sweep.spec
    n = job.trial.number
    run_dir = sweep.run_dir(job.phase, job.cell, n)
    meta: dict[str, Any] = {
        "cell": job.cell,
        "phase": job.phase,
        "trial": n,
        "study": job.study.study_name,
    }
    overrides: dict[str, Any] = {**job.overrides, **params}
    if job.seed is not None:
        overrides["train.seed"] = job.seed
        meta["seed"] = job.seed
        if spec.seed_data:
            overrides["task.seed"] = job.seed
    if threads and "threads" not in spec.base.get("train", {}):
        overrides["train.threads"] = threads
    overrides.update(layout or {})
    overrides.update(
        {
            "tracking.group": spec.name,
            "tracking.job_type": "seed" if job.phase == "seed" else "tune",
            "tracking.run_dir": str(run_dir),
            "tracking.name": f"{spec.name}-{job.phase}-{job.cell}-t{n}",
            "tracking.meta": meta,
            "tracking.tags": [*job.tags, job.phase],
        }
    )
    return build_cell_config(spec, overrides, f"trial {n} ({job.cell})", phase=job.phase)


def execute(
    sweep: Sweep,
    job: TrialJob,
    worker: str,
    scratch: Path,
    threads: int | None = None,
    group: Leader | None = None,
) -> str:
    """Run one claimed trial to its end and tell the study; returns the outcome status.

    ``scratch`` is a file the worker owns: the trial's config is written there for
    DDP ranks > 0, which Lightning starts by re-running the worker command. ``group``:
    the worker's other Slurm tasks (:mod:`bench.sweeps.slurm.ddp_tasks`), told each trial.

    A preempted trial (back from WAITING) or a retry of a dead worker's trial
    resumes from its checkpoint (:mod:`bench.sweeps.recovery.resume`).

    Raises :class:`Interrupted` after recording an interrupted trial (Ctrl-C);
    lets :class:`~bench.training.preemption.Preempted` through (the worker holds the trial
    for resumption).
    """
    spec, trial = sweep.spec, job.trial
    attrs = _trial_attrs(spec, job, worker)
    if job.phase == "seed":
        set_seed_params(trial, spec, job.overrides)
    cfg = _configure(sweep, job, attrs, threads, group.layout.overrides if group else None)
    if cfg is None:
        return "invalid"
    resume = _open_run_dir(job, cfg)
    pruner_cb = _pruning_callback(spec, job)
    if group is not None:
        group.announce(cfg, pruner_cb.metric if pruner_cb else "", resume)
    result = _train(
        job,
        cfg,
        scratch,
        resume,
        pruner_cb,
        command=f"bench sweep {spec.name}",
        retries=spec.retry.max_retries,
    )
    if isinstance(result, str):
        return result
    return _record(job, result, spec, pruner_cb)


def _trial_attrs(spec: SweepSpec, job: TrialJob, worker: str) -> dict[str, Any]:
    """The user attributes every trial carries: its cell, phase, worker, seed and axes."""
    attrs: dict[str, Any] = {
        "cell": job.cell,
        "phase": job.phase,
        "worker": worker,
        "status": "running",
    }
    if job.seed is not None:
        attrs["seed"] = job.seed
    attrs.update(axis_attrs(spec, job.overrides))  # optuna-dashboard tells cells apart by these
    return attrs


def _configure(
    sweep: Sweep,
    job: TrialJob,
    attrs: dict[str, Any],
    threads: int | None,
    layout: dict[str, int] | None = None,
) -> RunConfig | None:
    """The trial's run config, its attributes set on the trial; None when the sampled
    combination is invalid (the trial is then told FAIL with status ``invalid``)."""
    trial = job.trial
    try:
        params = suggest(trial, sweep.spec.space) if job.phase != "seed" else {}
        cfg = trial_config(sweep, job, params, threads, layout)
    except ConfigError as e:  # search mode can sample an invalid combination
        for k, v in {**attrs, "status": "invalid", "reason": str(e)}.items():
            trial.set_user_attr(k, v)
        job.study.tell(trial, state=TrialState.FAIL)
        return None
    attrs.update(run_dir=str(cfg.tracking.run_dir), seed=cfg.train.seed)
    for k, v in attrs.items():
        trial.set_user_attr(k, v)
    return cfg


def _open_run_dir(job: TrialJob, cfg: RunConfig) -> Path | None:
    """Claim the trial's run directory; the run directory to resume from, if any."""
    from bench.training.checkpoint import checkpoint_step

    t = cfg.tracking
    resume = prepare_run_dir(
        job.study,
        job.trial._trial_id,
        Path(str(t.run_dir)),
        {"tracking.run_dir": t.run_dir, "tracking.name": t.name, "tracking.meta": t.meta},
    )
    if resume is not None:
        try:
            step = checkpoint_step(resume / records.LAST_CKPT)
        except ConfigError as e:  # cut short by a crash or a full disk: train from step 0
            job.trial.set_user_attr("resume_refused", f"{e}; started again from step 0")
            start_over(resume)
            return None
        job.trial.set_user_attr("resumed_from_step", step)
    return resume


def _pruning_callback(spec: SweepSpec, job: TrialJob) -> PruningCallback | None:
    """The pruner of a tuning trial (seed re-runs are never pruned)."""
    if job.phase == "seed" or spec.effective_pruner == "none":
        return None
    objective = spec.objectives[0]
    return PruningCallback(
        job.trial,
        objective.metric,
        rule="chance" if spec.effective_pruner == "chance" else "optuna",
        minimize=objective.direction == "minimize",
    )


def _train(
    job: TrialJob,
    cfg: RunConfig,
    scratch: Path,
    resume: Path | None,
    pruner_cb: PruningCallback | None,
    command: str,
    retries: int | None = None,
) -> RunResult | str:
    """Train the trial's run; its result, or ``"failed"`` (:data:`DISK_FULL`) after telling
    the study so.

    A run that fails on a full disk is failed with its retry enqueued (at most
    ``retries``, the spec's ``retry.max_retries``): the next attempt resumes from its
    checkpoint once there is room. Any other failure is the trial's own.

    Raises :class:`Interrupted` after recording an interrupted trial (Ctrl-C).
    """
    from bench.training.run import train_run  # heavy import, only where training happens

    study, trial = job.study, job.trial
    records.atomic_write(scratch, dump_yaml(cfg))
    os.environ[TRIAL_CONFIG_ENV] = str(scratch)  # DDP ranks > 0 re-run the worker and read it
    os.environ[PRUNE_METRIC_ENV] = pruner_cb.metric if pruner_cb else ""
    try:
        with ddp_isolated():
            return train_run(cfg, [pruner_cb] if pruner_cb else [], resume=resume, command=command)
    except KeyboardInterrupt:
        fail_trial(study, trial._trial_id, "interrupted", "interrupted (Ctrl-C)", retry=None)
        raise Interrupted from None
    except Exception as e:
        reason = f"{type(e).__name__}: {e}".splitlines()[0]
        if isinstance(e, OSError) and e.errno in records.DISK_FULL:
            # the machine's state, not the configuration's: retried like a dead worker's trial
            fail_trial(study, trial._trial_id, "failed", reason, retry=retries)
            return DISK_FULL
        trial.set_user_attr("status", "failed")
        trial.set_user_attr("reason", reason)
        study.tell(trial, state=TrialState.FAIL)
        return "failed"
    finally:
        os.environ.pop(TRIAL_CONFIG_ENV, None)
        os.environ.pop(PRUNE_METRIC_ENV, None)


def _record(
    job: TrialJob, result: RunResult, spec: SweepSpec, pruner_cb: PruningCallback | None
) -> str:
    """Record a finished run's metrics and learning verdict on the trial and tell the
    study its outcome; returns the status. Raises :class:`Interrupted` for a run that
    was interrupted."""
    study, trial = job.study, job.trial
    trial.set_user_attr("metrics", {k: v for k, v in result.metrics.items() if math.isfinite(v)})
    if getattr(result, "learning", ""):  # learned / did_not_learn / collapsed (finished runs)
        trial.set_user_attr("learning", result.learning)
        trial.set_user_attr("learning_reason", result.learning_reason)
    status, reason, state, values = _judge(result, spec, pruner_cb, spec.multi_objective)
    if status == "interrupted":
        fail_trial(study, trial._trial_id, status, result.reason or "interrupted", retry=None)
        raise Interrupted
    trial.set_user_attr("status", status)
    trial.set_user_attr("reason", reason)
    study.tell(trial, values, state=state)
    return status


def _judge(result, spec, pruner_cb: PruningCallback | None, multi: bool):
    """(status, reason, state, values) for a finished train_run."""
    if result.status == "diverged":
        return "diverged", result.reason or "diverged", TrialState.PRUNED, None
    if result.status in ("failed", "interrupted"):
        return result.status, result.reason, TrialState.FAIL, None
    if pruner_cb is not None and pruner_cb.pruned_at is not None:
        why = f": {pruner_cb.reason}" if pruner_cb.reason else ""
        return "pruned", f"pruned at step {pruner_cb.pruned_at}{why}", TrialState.PRUNED, None
    values = []
    for o in spec.objectives:
        v = result.metrics.get(o.metric)
        if v is None or not math.isfinite(v):
            return (
                "failed",
                f"objective metric {o.metric!r} missing or not finite",
                TrialState.FAIL,
                None,
            )
        values.append(float(v))
    return "completed", result.reason, None, values if multi else values[0]


def host_worker_id(worker_id: str | int) -> str:
    """``host:id`` names a worker across machines."""
    return f"{socket.gethostname()}:{worker_id}"

"""Finishing a run: its metrics, the end-of-run landscape, diagnoses, loggers and records.

:func:`finish_run` turns a fitted run into ``summary.json`` (written last: its
presence marks the run finished) and a :class:`RunResult`; :func:`fail` records
a failed one as well as the disk allows. Loggers are closed here, never fatally.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import torch
from lightning.pytorch.loggers import Logger

from bench import records
from bench.config import RunConfig
from bench.diagnostics import landscape_of
from bench.run import Run
from bench.tasks.baseline import judge_learning
from bench.training.csvlog import MetricsCSVLogger
from bench.training.trainer import Assembled


@dataclass(frozen=True)
class RunResult:
    """What a run returns to its caller: plain data, safe across processes."""

    status: str  # completed | stopped | diverged | failed | interrupted
    run_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    # learned | did_not_learn | collapsed (bench.tasks.baseline); "" when not judged (diverged)
    learning: str = ""
    learning_reason: str = ""
    # what bench.diagnoses found: [{rule, title, evidence, paper, advice, kind, why}]
    diagnoses: list[dict[str, str]] = field(default_factory=list)


def finite(metrics: dict[str, float]) -> dict[str, float]:
    """The entries that are finite floats."""
    return {k: v for k, v in metrics.items() if isinstance(v, float) and math.isfinite(v)}


def final_metrics(run: Assembled) -> dict[str, float]:
    """The last logged values (the module's and the diagnostics'), the best validation ones
    and the diagnostics' whole-run figures: every metric of the run, for ``summary.json``."""
    metrics: dict[str, float] = {}
    for lg in run.loggers:
        if isinstance(lg, MetricsCSVLogger):
            metrics.update(lg.last_values())
    metrics.update(finite({k: float(v) for k, v in run.trainer.callback_metrics.items()}))
    metrics.update(run.tracker.best)
    for cb in run.diagnostics:  # whole-run figures (e.g. mean tokens/s) beat the last logged ones
        summary = getattr(cb, "summary", None)
        if summary is not None:
            metrics.update(finite(summary()))
    return metrics


def finish_run(
    cfg: RunConfig, run: Assembled, status: str, reason: str, started: float
) -> RunResult:
    """Record a fitted run (``completed``, ``stopped`` or ``diverged``) and say how it went."""
    run_dir, step = run.opened.run_dir, run.trainer.global_step
    metrics = final_metrics(run)
    if status == "diverged":
        found = diagnoses(cfg, run, {"status": status}) if run.opened.primary else []
        run.record_status(status, reason, step=step, diagnoses=found)
        finish_loggers(run.loggers, "failed", summary=diagnosis_keys(found))
        return RunResult(status, run_dir, metrics, reason, diagnoses=found)
    try:
        # the full training state (optimizer, loops, callbacks): `bench train --resume` continues
        run.trainer.save_checkpoint(run_dir / records.LAST_CKPT, weights_only=False)
    except Exception as e:
        fail(e, run, step)
    if cfg.diagnostics.landscape.enabled and run.trainer.is_global_zero:
        nothing: dict[str, float] = {}  # when the landscape fails
        metrics.update(run.errors.call("landscape", "end of run", lambda: landscape(run), nothing))
    summary = _summary(run, status, reason, started, metrics)
    learning, learning_reason = summary["learning"]["status"], summary["learning"]["reason"]
    found = diagnoses(cfg, run, summary) if run.opened.primary else []
    summary["diagnoses"] = found
    # W&B's summary already holds each logged key's min/last; add what only we know.
    extra: dict[str, Any] = {k: v for k, v in metrics.items() if k.startswith("best/")}
    extra.update(steps=step, params=summary["params"], status=status)
    extra.update(learning=learning, learning_reason=learning_reason)
    extra.update(diagnosis_keys(found))
    figures = run_dir / records.DIAGNOSTICS  # landscape, gradient heatmap, Hessian, ...
    finish_loggers(run.loggers, "success", summary=extra, cfg=cfg, figures=figures, step=step)
    run.record_status(status, reason, step=step)
    if run.opened.primary:
        records.write_json(run_dir / records.SUMMARY, summary)  # last: it marks the run finished
    return RunResult(status, run_dir, metrics, reason, learning, learning_reason, found)


def _summary(
    run: Assembled, status: str, reason: str, started: float, metrics: dict[str, float]
) -> dict[str, Any]:
    """``summary.json`` without its diagnoses: outcome, size, metrics, chance level, verdict."""
    baseline = run.datamodule.baseline()
    chance = baseline.as_dict()
    learning, learning_reason = judge_learning(chance, metrics, baseline.description)
    return {
        "status": status,
        "reason": reason,
        "steps": run.trainer.global_step,
        "wall_time": time.time() - started,
        "params": sum(p.numel() for p in run.module.model.parameters()),
        "world_size": run.trainer.world_size,  # processes that trained (DDP ranks)
        "metrics": metrics,
        "diagnostic_errors": run.errors.messages,  # "name: hook: Error: message" per failure
        "baseline": chance,
        "learning": {"status": learning, "reason": learning_reason},
    }


def diagnoses(cfg: RunConfig, run: Assembled, summary: dict[str, Any]) -> list[dict[str, str]]:
    """The diagnosis rules on this run's records (never fatal); online W&B gets an alert."""
    from bench.diagnoses import RunRecords, diagnose
    from bench.tracking import SafeWandbLogger, alert_diagnoses

    run_dir, errors = run.opened.run_dir, run.errors

    def find() -> list[dict[str, str]]:
        for lg in run.loggers:
            if isinstance(lg, MetricsCSVLogger):
                lg.save()  # metrics.csv holds every logged row before the rules read it
        rec = RunRecords(Run(run_dir).history(), cfg.flat(), summary, summary["status"])
        failed = lambda name, e: errors.record(f"diagnosis {name}", "end of run", e)  # noqa: E731
        return [d.as_dict() for d in diagnose(rec, on_error=failed)]

    none_found: list[dict[str, str]] = []  # when the rules cannot run
    found = errors.call("diagnoses", "end of run", find, none_found)
    for lg in run.loggers:
        if isinstance(lg, SafeWandbLogger):
            alert = functools.partial(alert_diagnoses, lg, found, run_dir.name)
            errors.call("diagnoses", "W&B alert", alert, False)
    return found


def diagnosis_keys(found: list[dict[str, str]]) -> dict[str, str]:
    """The W&B summary keys ``diagnosis/<rule>`` of what the rules found."""
    from bench.tracking import diagnosis_summary

    return diagnosis_summary(found)


_WRITE_FAILED = ("file write failed", "No space left on device", "unexpected pos")


def fail(e: BaseException, run: Assembled, step: int) -> NoReturn:
    """Record a failed run as well as the disk allows, then raise (a full disk as OSError)."""
    run_dir = run.opened.run_dir
    reason = f"{type(e).__name__}: {e}".strip().splitlines()[0]
    with contextlib.suppress(Exception):  # the disk may be full: the original error matters
        run.record_status("failed", reason, step=step)
    with contextlib.suppress(Exception):
        finish_loggers(run.loggers, "failed")
    if isinstance(e, RuntimeError) and any(m in str(e) for m in _WRITE_FAILED):
        # torch.save reports a full disk as a RuntimeError of its zip writer
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(run_dir)) from e
    if isinstance(e, OSError) and not e.filename:  # e.g. a write(2) into a full disk
        raise OSError(e.errno, e.strerror, str(run_dir)) from e
    raise e


def landscape(run: Assembled) -> dict[str, float]:
    """The end-of-run loss landscape; the trajectory's first snapshot is the init."""
    from bench.diagnostics.landscape import load_trajectory

    run_dir = run.opened.run_dir
    traj = load_trajectory(run_dir / records.DIAGNOSTICS / "trajectory.npz")
    summary = landscape_of(run.module, run.datamodule, run_dir, torch.from_numpy(traj.params[0]))
    for lg in run.loggers:
        lg.log_metrics(summary, step=run.trainer.global_step)
    return finite(summary)


def finish_loggers(
    loggers: list[Logger],
    outcome: str,
    summary: dict[str, Any] | None = None,
    cfg: RunConfig | None = None,
    figures: Path | None = None,
    step: int | None = None,
) -> None:
    """Close every logger (never fatal). W&B gets the final metrics and the cell's axes as
    summary keys (``cfg``) and the diagnostics' figures as images (``figures``)."""
    from bench.tracking import SafeWandbLogger, finish, summary_keys

    for lg in loggers:
        if isinstance(lg, SafeWandbLogger):
            if figures is not None and figures.is_dir():
                lg.log_figures(figures, step)
            if summary:
                lg.update_summary({**(summary_keys(cfg) if cfg is not None else {}), **summary})
            finish(lg, 0 if outcome == "success" else 1)
        else:
            lg.finalize(outcome)

"""Trials that continue where they stopped: preempted trials and retries of dead workers' trials.

Two ways a trial stops before its end, one way to continue it:

- **Preempted** (Slurm's pre-timeout signal, SIGTERM; see :mod:`bench.training.preemption`):
  the run has checkpointed itself; :func:`hold_for_resumption` puts the trial
  back from RUNNING to WAITING, keeping its number, parameters and run
  directory. The next worker that asks the study for a trial (the requeued one,
  or any other) gets this same trial back, and :func:`prepare_run_dir` resumes
  it from ``last.ckpt``: same trial number, seed and W&B run id.
- **Its worker died** (SIGKILL, OOM, a lost node): the launcher, ``recovery.py``
  or a stale heartbeat fails it and Optuna's retry convention enqueues a new
  trial (``failed_trial``/``retry_history`` system attributes) in the same slot.
  :func:`prepare_run_dir` copies the dead attempt's run directory (its checkpoint,
  metrics and W&B run id) into the retry's and resumes from the checkpoint the
  dead worker last wrote.

A run directory with no checkpoint starts again from step 0 (only its W&B id is kept);
so does one whose checkpoint cannot be read (a crash or a full disk cut it short:
``objective.py`` checks it and records ``resume_refused`` on the trial).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from bench import records
from bench.run import Run

PREEMPTIONS = "preemptions"  # system attribute: times this trial was preempted and put back


def holds_slot(t: FrozenTrial) -> bool:
    """A WAITING trial that already holds a budget slot: a retry, or a preempted trial."""
    return "failed_trial" in t.system_attrs or PREEMPTIONS in t.system_attrs


def hold_for_resumption(study: optuna.Study, trial_id: int, reason: str) -> bool:
    """RUNNING -> WAITING with status ``preempted``; False if the trial already finished."""
    storage = study._storage
    frozen = storage.get_trial(trial_id)
    if frozen.state != TrialState.RUNNING:
        return False
    try:
        storage.set_trial_user_attr(trial_id, "status", "preempted")
        storage.set_trial_user_attr(trial_id, "reason", reason)
        count = int(frozen.system_attrs.get(PREEMPTIONS, 0)) + 1
        storage.set_trial_system_attr(trial_id, PREEMPTIONS, count)
        return storage.set_trial_state_values(trial_id, state=TrialState.WAITING)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False


def _previous_attempt(study: optuna.Study, trial: FrozenTrial) -> Path | None:
    """The run directory of the attempt a retry replaces (the newest in its retry history)."""
    history = trial.system_attrs.get("retry_history") or []
    if not history:
        return None
    number = int(history[-1])
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            recorded = t.user_attrs.get("run_dir")
            return Path(recorded) if recorded else None
    return None


def prepare_run_dir(
    study: optuna.Study, trial_id: int, run_dir: Path, overrides: dict[str, Any]
) -> Path | None:
    """Make ``run_dir`` ready for the trial; returns it when the run resumes, else None.

    ``overrides``: ``tracking.*`` values of this attempt, written into a copied
    run's ``config.yaml`` (it names the directory and trial it now belongs to).
    """
    if Run(run_dir).resumable:
        return run_dir  # a preempted trial, back on a worker
    frozen = study._storage.get_trial(trial_id)
    source = _previous_attempt(study, frozen) if "failed_trial" in frozen.system_attrs else None
    if source is not None and source != run_dir and Run(source).resumable:
        if run_dir.exists():
            shutil.rmtree(run_dir)
        # The W&B run id is copied too: the retry continues the dead attempt's W&B run.
        shutil.copytree(source, run_dir, ignore=_only_wandb_id)
        _retarget_config(run_dir, overrides)
        return run_dir
    if run_dir.exists() and not run_dir.is_dir():
        return None  # not ours to remove: the run itself fails on it, as a failed trial
    if run_dir.exists():  # stopped before its first checkpoint: start again, same W&B run
        start_over(run_dir)
    return None


def start_over(run_dir: Path) -> None:
    """Empty ``run_dir`` but for its W&B run id: the run starts again from step 0."""
    for child in run_dir.iterdir():
        if child.name == Path(records.WANDB_ID).parts[0]:
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _only_wandb_id(directory: str, names: list[str]) -> list[str]:
    """copytree's ignore: of the W&B directory keep only the run id (not the old run's files)."""
    wandb_dir, keep = Path(records.WANDB_ID).parts
    return [n for n in names if n != keep] if Path(directory).name == wandb_dir else []


def _retarget_config(run_dir: Path, overrides: dict[str, Any]) -> None:
    path = run_dir / records.CONFIG
    cfg = yaml.safe_load(path.read_text())
    for key, value in overrides.items():
        section, name = key.split(".", 1)
        cfg.setdefault(section, {})[name] = value
    records.atomic_write(path, yaml.safe_dump(cfg, sort_keys=False))

"""Failing a running trial and enqueuing its retry, as Optuna's heartbeat does.

Used by a worker (a trial it gives up), the launcher (a worker that died) and
orphan recovery; none of them needs Lightning, so neither does this module.
"""

from __future__ import annotations

import datetime
import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

RETRY_PENDING = "bench_retry"  # system attribute: this failed trial is to be retried
LOST_RETRY_AFTER = 30.0  # seconds after its failure before a missing retry is enqueued


def requeue(study: optuna.Study, trial_id: int, max_retry: int | None) -> None:
    """Enqueue a retry of a failed trial (Optuna's retry convention, shared with heartbeats)."""
    frozen = study._storage.get_trial(trial_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, frozen)


def fail_trial(
    study: optuna.Study, trial_id: int, status: str, reason: str, retry: int | bool | None
) -> bool:
    """Mark a RUNNING trial FAIL with ``status``/``reason``; optionally enqueue a retry.

    ``retry``: False for none, None for unlimited, an int for at most that many.
    Returns False when the trial had already finished (someone else handled it).
    """
    storage = study._storage
    if storage.get_trial(trial_id).state != TrialState.RUNNING:
        return False
    try:
        storage.set_trial_user_attr(trial_id, "status", status)
        storage.set_trial_user_attr(trial_id, "reason", reason)
        if retry is not False:  # the intent, before the state: see requeue_lost_retries
            storage.set_trial_system_attr(trial_id, RETRY_PENDING, True)
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    if retry is not False:
        requeue(study, trial_id, retry)
    return True


def requeue_lost_retries(
    study: optuna.Study, max_retry: int | None, after: float = LOST_RETRY_AFTER
) -> list[int]:
    """Enqueue the retries that a failed trial was promised and never got; their numbers.

    :func:`fail_trial` marks the trial (``RETRY_PENDING``), fails it, then enqueues the
    retry: two writes. A process killed between them, or a database restart, leaves a
    FAIL trial that holds its budget slot with nothing to continue it: a planned trial
    lost (``tools/chaos.py`` found one). Any worker repairs it ``after`` seconds later
    (time for the failing process to finish its own enqueue).
    """
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history") or []}
    now = datetime.datetime.now()
    lost = [
        t
        for t in trials
        if t.state == TrialState.FAIL
        and t.system_attrs.get(RETRY_PENDING)
        and t.number not in retried
        and t.datetime_complete is not None
        and (now - t.datetime_complete).total_seconds() > after
    ]
    for t in lost:
        requeue(study, t._trial_id, max_retry)
    return [t.number for t in lost]

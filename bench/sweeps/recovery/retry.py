"""Failing a running trial and enqueuing its retry, as Optuna's heartbeat does.

Used by a worker (a trial it gives up), the launcher (a worker that died) and
orphan recovery; none of them needs Lightning, so neither does this module.
"""

from __future__ import annotations

import warnings

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState


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
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    if retry is not False:
        requeue(study, trial_id, retry)
    return True

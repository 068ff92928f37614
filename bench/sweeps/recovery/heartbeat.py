"""Heartbeats of a running trial, for RDB storages (Optuna fails a trial whose worker went silent).

Journal files have no heartbeats: every function here is then a no-op. The worker
records the first heartbeat right after ``ask`` (``Worker.claim``) and
:func:`heartbeat` the rest while the trial runs; ``Worker`` fails and retries stale
trials of dead workers.
"""

from __future__ import annotations

import datetime
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol, cast

import optuna


class Heartbeats(Protocol):
    """What an Optuna storage with heartbeats (RDB, also behind Optuna's cache) offers."""

    def get_heartbeat_interval(self) -> int | None: ...

    def record_heartbeat(self, trial_id: int) -> None: ...

    def _get_stale_trial_ids(self, study_id: int) -> list[int]: ...


def heartbeats(storage: optuna.storages.BaseStorage) -> Heartbeats | None:
    """The storage as one that records heartbeats, or None (journal files, RDB without)."""
    if heartbeat_interval(storage):
        return cast(Heartbeats, storage)
    return None


def heartbeat_interval(storage: optuna.storages.BaseStorage) -> int | None:
    """Seconds between heartbeats (RDB storages with heartbeats), else None."""
    return getattr(storage, "get_heartbeat_interval", lambda: None)()


@contextmanager
def heartbeat(storage: optuna.storages.BaseStorage, trial_id: int) -> Iterator[None]:
    """Record heartbeats for an RDB storage while a trial runs (no-op for journal files).

    Optuna only judges trials with at least one heartbeat: the worker records the
    first one right after ``ask`` (see ``Worker.claim``), this thread the rest.
    """
    beating = heartbeats(storage)
    interval = heartbeat_interval(storage)
    if beating is None or not interval:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                beating.record_heartbeat(trial_id)
            except Exception as e:  # a dropped connection must not kill the trial
                warnings.warn(f"heartbeat failed: {e}", stacklevel=1)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def unbeating_trial_ids(
    storage: optuna.storages.BaseStorage, study_id: int, older_than: float
) -> list[int]:
    """RUNNING trials of an RDB study that never recorded a heartbeat, started ``older_than`` s ago.

    A worker records a trial's first heartbeat right after ``ask``; Optuna never judges
    a trial without one. A trial is left so when its worker died, or lost the
    database (a server restart), *inside* ``ask``: the trial was taken from the
    queue or created, then ``ask`` raised before returning it. No worker owns it,
    no heartbeat will ever make it stale: without this it would stay RUNNING for good.
    """
    from optuna.storages import RDBStorage
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from optuna.trial import TrialState

    rdb = getattr(storage, "_backend", storage)  # Optuna may wrap it in its cache
    if not isinstance(rdb, RDBStorage):
        return []
    from sqlalchemy import orm

    now = datetime.datetime.now()  # Optuna stamps datetime_start with the worker's local time
    with _create_scoped_session(rdb.scoped_session, True) as session:
        running = (
            session.query(models.TrialModel)
            .options(orm.selectinload(models.TrialModel.heartbeats))
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .filter(models.TrialModel.study_id == study_id)
            .all()
        )
        return [
            int(t.trial_id)
            for t in running
            if not t.heartbeats
            and t.datetime_start is not None
            and (now - t.datetime_start).total_seconds() > older_than
        ]

"""Heartbeats of a running trial, for RDB storages (Optuna fails a trial whose worker went silent).

Journal files have no heartbeats: every function here is then a no-op. The worker
records the first heartbeat right after ``ask`` (``Worker.claim``) and
:func:`heartbeat` the rest while the trial runs; ``Worker`` fails and retries stale
trials of dead workers.
"""

from __future__ import annotations

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

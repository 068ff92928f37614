"""Where a sweep's studies live: a journal file (one machine) or an RDB URL (many).

A storage is named by a string: a URL with a scheme (``postgresql://...``,
``sqlite:///...``, ``mysql://...``) is an RDB storage with heartbeats, so a
trial whose worker vanished is failed and retried; anything else is the path of
an Optuna journal file. :func:`check_storage` reaches the storage without
creating anything, so a bad URL fails before the sweep directory exists.
"""

from __future__ import annotations

import random
import time
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from bench.config import ConfigError
from bench.sweeps.spec import RetrySpec

JOURNAL_NAME = "journal.log"
RDB_CREATE_ATTEMPTS = 5
JOURNAL_LOCK_GRACE = 10  # seconds before a lock left by a killed process is broken


def is_rdb(url: str) -> bool:
    """True for SQLAlchemy URLs (``scheme://...``), False for journal file paths."""
    return "://" in url


def default_storage(sweep_dir: Path) -> str:
    """The journal file inside the sweep directory (absolute, so workers anywhere agree)."""
    return str((sweep_dir / JOURNAL_NAME).resolve())


def check_storage(url: str) -> None:
    """Raise ConfigError (one line) when the storage cannot be reached; creates nothing."""
    if not is_rdb(url):
        parent = Path(url).parent
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"storage={url}: {parent} is not a directory")
        return
    import sqlalchemy

    args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    try:
        engine = sqlalchemy.create_engine(url, connect_args=args)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
        engine.dispose()
    except Exception as e:  # driver errors vary; the user needs the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"storage={redact(url)}: cannot connect ({first})") from None


def redact(url: str) -> str:
    """The URL with any password hidden, for messages and sweep.json."""
    from bench import redact as hide

    return hide.url(url)


def open_storage(url: str, retry: RetrySpec | None = None) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``; RDB storages record heartbeats and retry stale trials."""
    retry = retry or RetrySpec()
    if not is_rdb(url):
        from bench.sweeps.recovery.journal import repair_and_report

        Path(url).parent.mkdir(parents=True, exist_ok=True)
        repair_and_report(url)  # never append after a record a crash cut short
        lock = JournalFileSymlinkLock(url, grace_period=JOURNAL_LOCK_GRACE)
        return JournalStorage(JournalFileBackend(url, lock_obj=lock))
    import sqlalchemy.exc

    for attempt in range(RDB_CREATE_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url,
                    engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=retry.heartbeat_interval,
                    grace_period=retry.grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(
                        max_retry=retry.max_retries
                    ),
                )
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Workers starting together on an empty database race to create Optuna's
            # tables and types; the loser finds them created on the next attempt.
            if attempt == RDB_CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.2 + random.random())
    raise AssertionError("unreachable")


def quiet_optuna() -> None:
    """Optuna logs every study creation and trial at INFO; sweeps show their own progress."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)

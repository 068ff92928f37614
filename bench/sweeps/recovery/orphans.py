"""Recover the trials of workers that died with their launcher (crash, reboot, OOM killer).

Each worker names the trial it runs in ``workers/<id>.json``, with the identity of
its process: host, pid, and the process's start time and boot id from ``/proc``
(a pid alone can be reused by an unrelated process). When a launcher or worker
starts, every such file whose process is gone (same host, and no live process
with that pid *and* start time) is an orphan: its trial is failed (``status``
failed, with the reason) and re-enqueued, on any storage. Journal files have no
heartbeats, so without this a rerun would wait for those trials forever.
Files written on another host are left to that host (or to RDB heartbeats).
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

import optuna

from bench.sweeps.layout import WORKERS, Sweep
from bench.sweeps.recovery.retry import fail_trial


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat``: when the process started, in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19])  # field 22 overall = index 19 after pid and comm


def identity(pid: int | None = None) -> dict[str, Any]:
    """What names a process uniquely on this machine, over reboots: host, pid, start, boot."""
    pid = os.getpid() if pid is None else pid
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "start": _start_ticks(pid),
        "boot": _boot_id(),
    }


def is_alive(ident: dict[str, Any]) -> bool | None:
    """True/False for a process of this host; None when it ran elsewhere (cannot tell)."""
    if ident.get("host") not in (None, socket.gethostname()):
        return None
    pid = ident.get("pid")
    if not isinstance(pid, int):
        return False
    if ident.get("boot") is not None and ident.get("boot") != _boot_id():
        return False  # the machine rebooted since
    start = _start_ticks(pid)
    if start is None:
        if Path("/proc/self/stat").exists():
            return False  # /proc works and has no such process
        try:  # no /proc (not Linux): existence of the pid is all we can check
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return ident.get("start") is None or start == ident.get("start")


def recover_orphans(sweep: Sweep) -> list[str]:
    """Fail and re-enqueue the trial of every dead worker of this host; returns one note each."""
    notes: list[str] = []
    for path in sorted((sweep.dir / WORKERS).glob("*.json")):
        try:
            raw = path.read_text()
            state = json.loads(raw)
        except (OSError, ValueError):
            continue
        if not isinstance(state, dict) or "trial_id" not in state or "study" not in state:
            continue
        if is_alive(state) is not False:
            continue
        study = optuna.load_study(study_name=state["study"], storage=sweep.open_storage())
        reason = (
            f"worker {path.stem} (pid {state.get('pid')}) died with its launcher "
            "(crash, reboot or OOM kill); recovered on restart"
        )
        if fail_trial(study, state["trial_id"], "failed", reason, sweep.spec.retry.max_retries):
            notes.append(
                f"trial {state.get('number')} of {state['study']}: its worker "
                f"(pid {state.get('pid')}) is gone; failed and re-enqueued"
            )
        try:  # remove the file unless a new worker of the same id has replaced it meanwhile
            if path.read_text() == raw:
                path.unlink()
        except OSError:
            pass
    return notes

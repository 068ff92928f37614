"""The run directory's files: what a run leaves behind, written safely.

``config.yaml`` (resolved), ``metrics.csv`` (history), ``status.json`` (running /
completed / stopped / diverged / failed / interrupted / preempted, with the reason),
``summary.json`` (written last and atomically: its presence means the run ended
normally), ``manifest.json`` (how to reproduce it).

Plain Python on purpose: the report reads runs through this module and must not
pay for importing torch or Lightning.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import redact
from bench.io import atomic_path
from bench.io import atomic_write as atomic_write  # re-exported: readers of runs use records
from bench.io import write_json as write_json

CONFIG = "config.yaml"
METRICS = "metrics.csv"
STATUS = "status.json"
SUMMARY = "summary.json"
MANIFEST = "manifest.json"
CHECKPOINTS = "checkpoints"
LAST_CKPT = "checkpoints/last.ckpt"
DIAGNOSTICS = "diagnostics"
WANDB_ID = "wandb/run-id"  # the W&B run id: a resumed run continues the same W&B run


def write_status(run_dir: Path, status: str, reason: str = "", **extra: Any) -> None:
    """Record the run's state; ``running`` at start, the outcome at the end.

    On a full disk the new status overwrites the old file in place (padded with
    spaces, which JSON ignores), in the space the old one already holds.
    """
    data = {"status": status, "reason": reason, "time": time.time(), **extra}
    path = run_dir / STATUS
    try:
        write_json(path, data)
    except OSError as e:
        if e.errno not in DISK_FULL or not path.is_file():
            raise
        text = json.dumps(data, sort_keys=True, default=str).encode()
        old = path.stat().st_size
        if len(text) > max(old, 4096):
            raise
        with open(path, "r+b") as f:
            f.write(text + b" " * max(old - len(text), 0))
            f.flush()
            os.fsync(f.fileno())


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def os_problem(e: BaseException, path: Path | None = None) -> tuple[int, str] | None:
    """(exit code, one line) for a file-system error a user can act on, else None.

    A directory that cannot be written is the user's choice of path (exit 2);
    a full disk is the machine's state (exit 1).
    """
    if not isinstance(e, OSError) or e.errno not in DISK_FULL | NOT_WRITABLE:
        return None
    where = e.filename or path or "output"
    if e.errno in DISK_FULL:
        return 1, f"{where}: no space left on the device; free space or choose another directory"
    return 2, f"{where}: not writable ({e.strerror}); choose another output directory"


_PACKAGES = ("torch", "lightning", "wandb", "optuna", "numpy", "pydantic")


def git_sha() -> str | None:
    """The commit of the bench checkout, with ``-dirty`` when it has local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        ).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def manifest(seed: int, command: str | None, device: str) -> dict[str, Any]:
    """What is needed to reproduce a run: code version, packages, hardware, seed, command."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_sha": git_sha(),
        "packages": versions,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": device,
        "seed": seed,
        "command": redact.text(command) if command is not None else redact.command(sys.argv),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Drop history rows after ``last_step`` (logged after the checkpoint we resume from)."""
    path = run_dir / METRICS
    if not path.is_file():
        return
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        rows = [  # a row with more fields than the header is a torn write's remains
            r
            for r in reader
            if None not in r and (r.get("step") in ("", None) or int(float(r["step"])) <= last_step)
        ]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def fmt_duration(seconds: float | None) -> str:
    """``4.2s``, ``3m07s``, ``2h05m``; ``-`` when unknown."""
    if seconds is None or seconds != seconds or seconds in (float("inf"), float("-inf")):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"

"""Repair a journal file that a crash cut in the middle of a record.

Optuna's journal is one JSON record per line, appended under a lock. A process
killed mid-write leaves a torn last line (no newline). Optuna skips it while
reading, but the next append lands on the same line, and from then on every
read fails with a JSONDecodeError. :func:`repair_journal` runs (under the
journal's lock) before the storage is opened: it drops a torn last record and
splits a record that was appended onto a torn one, keeping a backup of the file
as it was. It never touches a journal whose lines are all whole records.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from optuna.storages.journal import JournalFileSymlinkLock

from bench.io import atomic_write

RECORD_START = b'{"op_code"'  # how every Optuna journal record begins
_reported: set[str] = set()


def _whole(line: bytes) -> bool:
    """A complete record: one record start, a newline at the end, valid JSON."""
    if not line.endswith(b"\n") or line.count(RECORD_START) != 1:
        return False
    if line.startswith(RECORD_START) and line.rstrip().endswith(b"}"):
        return True  # the common case, without parsing: Optuna parses it anyway
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def _salvage(line: bytes) -> tuple[bytes, int]:
    """(the whole record at the end of a damaged line, bytes dropped before it)."""
    i = line.rfind(RECORD_START)
    if i > 0 and line.endswith(b"\n"):
        tail = line[i:]
        try:
            json.loads(tail)
            return tail, i
        except ValueError:
            pass
    return b"", len(line)


def needs_repair(path: Path) -> bool:
    """Cheap check: is some line a torn record (it starts like a record but is not whole)?

    A line that does not even start like a record is no crash damage: the file is not
    an Optuna journal, and it is left alone for the storage to refuse.
    """
    with open(path, "rb") as f:
        lines = [line for line in f if not _whole(line)]
    return bool(lines) and all(line.startswith(RECORD_START) for line in lines)


def repair_journal(path: str | Path, lock_grace: int = 10) -> str | None:
    """Fix a torn journal in place; returns the one-line note of what was dropped, or None."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0 or not needs_repair(path):
        return None
    lock = JournalFileSymlinkLock(str(path), grace_period=lock_grace)
    lock.acquire()
    try:
        with open(path, "rb") as f:
            lines = f.readlines()
        kept: list[bytes] = []
        dropped, records = 0, 0
        if not all(_whole(line) or line.startswith(RECORD_START) for line in lines):
            return None  # not crash damage (see needs_repair)
        for line in lines:
            if _whole(line):
                kept.append(line)
                continue
            tail, lost = _salvage(line)
            dropped += lost
            records += 1
            if tail:
                kept.append(tail)
        if not records:
            return None  # another process repaired it while we waited for the lock
        backup = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(path, backup)
        atomic_write(path, b"".join(kept))
    finally:
        lock.release()
    return (
        f"{path}: dropped {dropped} bytes of {records} torn journal record(s) left by a crash "
        f"mid-write; the file as it was is kept at {backup.name}"
    )


def repair_and_report(path: str | Path) -> None:
    """:func:`repair_journal`, with its note printed once per process on stderr."""
    note = repair_journal(path)
    if note and note not in _reported:
        _reported.add(note)
        print(f"bench: warning: {note}", file=sys.stderr)

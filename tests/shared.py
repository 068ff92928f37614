"""Things made once per test session and shared by every pytest-xdist worker.

A trained run or a finished sweep costs seconds to minutes; tests that only read it
share one copy. The first worker to ask makes it under a file lock; the others wait
for it and read the same directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any


@cache
def session_root() -> Path:
    """One directory for every worker of a pytest-xdist session (its run id names it)."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run is None:
        return Path(tempfile.mkdtemp(prefix="bench-session-"))
    root = Path(tempfile.gettempdir()) / f"bench-session-{run}"
    root.mkdir(exist_ok=True)
    return root


def made_once(name: str, make: Callable[[Path], Any]) -> tuple[Path, Any]:
    """(``ROOT/name``, what ``make(ROOT/name)`` returned), made by one worker a session.

    ``make`` fills the directory it is given and returns a JSON-able record of how it
    went (e.g. a process's exit code and output), which every worker gets back.
    """
    folder = session_root() / name
    folder.mkdir(exist_ok=True)
    with open(session_root() / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = session_root() / f"{name}.json"
        if not record.is_file():
            record.write_text(json.dumps(make(folder)))
        return folder, json.loads(record.read_text())

"""Run a command on a real pseudo-terminal and read what it drew (control codes removed)."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def drain(master: int) -> str:
    """Everything written to a pty until every writer closed it, as text without ANSI codes."""
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the last writer closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    return ANSI.sub("", b"".join(chunks).decode(errors="replace"))


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 120) -> tuple[int, str]:
    """``python -m bench ARGS`` with stdout and stderr on a pty: (exit code, screen text)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    screen = drain(master)
    code = proc.wait(timeout=timeout)
    os.close(master)
    return code, screen

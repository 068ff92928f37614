"""Installing a Debian package a test needs, once, however many pytest workers ask.

Two xdist workers that both find Chromium (or Slurm) missing would run apt-get
at the same time, and the second fails on dpkg's lock (exit 100). Here the
installs take one file lock, re-check after getting it, and apt itself waits
for a lock held by any other process on the machine.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

LOCK = Path("/tmp/bench-tests-apt.lock")
APT_WAIT = ("-o", "DPkg::Lock::Timeout=600")


def apt_install(packages: list[str], present: Callable[[], bool]) -> None:
    """Install ``packages`` unless ``present()`` holds (checked again under the lock)."""
    if present():
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if present():
            return  # another worker installed them while this one waited
        subprocess.run(
            ["apt-get", *APT_WAIT, "update"], check=True, capture_output=True, timeout=600
        )
        subprocess.run(
            ["apt-get", *APT_WAIT, "install", "-y", *packages],
            check=True,
            capture_output=True,
            timeout=1200,
            env=env,
        )

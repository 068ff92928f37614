"""A real one-node Slurm cluster for the tests: Debian's slurm-wlm and munge, started by
``tools/local-slurm.sh`` in a temporary directory, stopped by the PID files it wrote.

:func:`slurm_unavailable` installs the packages with apt-get when they are missing,
as :func:`tests.browser.ensure_chromium` does for Chromium; where that cannot be done
(no root, no apt-get, a failed install) the Slurm tests skip with its one-line reason.
CI (``.ci/run``) runs them. :func:`local_slurm` picks two free ports, starts the cluster,
points ``SLURM_CONF`` at it and always stops the daemons afterwards.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from tests.apt import apt_install

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "local-slurm.sh"


def _installed() -> bool:
    return all(shutil.which(b) for b in ("slurmctld", "slurmd", "munged", "sbatch"))


def slurm_unavailable() -> str | None:
    """Why no local cluster can run here (one line), or None; installs Slurm when it can.

    slurmctld, slurmd and munged come from Debian's packages, installed with apt-get
    when missing. Both the install and the daemons need root: without root, or
    without apt-get, or when the install fails, the Slurm tests skip with this reason.
    """
    if os.geteuid() != 0:
        return "the local Slurm cluster needs root (slurmd runs jobs as their users)"
    if _installed():
        return None
    if not shutil.which("apt-get"):
        return "slurm-wlm and munge are not installed and there is no apt-get to install them"
    try:
        apt_install(["slurm-wlm", "munge"], _installed)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        err = (getattr(e, "stderr", b"") or b"").decode(errors="replace").strip().splitlines()
        return f"apt-get install slurm-wlm munge failed ({err[-1] if err else e})"
    return None


def _free_port_pair() -> int:
    """A port p with p and p+1 free (slurmctld and slurmd)."""
    for _ in range(50):
        with closing(socket.socket()) as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        if port > 65000:
            continue
        with closing(socket.socket()) as s2:
            try:
                s2.bind(("", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two consecutive free ports")


@contextmanager
def local_slurm(directory: Path) -> Iterator[dict[str, str]]:
    """A running one-node cluster; yields the environment that reaches it (``SLURM_CONF``).

    One cluster at a time on this machine: two slurmd daemons for the same node (two
    pytest-xdist workers each starting one) fight over it and one dies, so a second
    caller waits on a lock file until the first cluster is stopped.
    """
    reason = slurm_unavailable()
    if reason is not None:
        import pytest

        pytest.skip(reason)
    lock = open(Path(tempfile.gettempdir()) / "bench-local-slurm.lock", "w")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    env = {**os.environ, "BENCH_SLURM_PORT": str(_free_port_pair())}
    started = time.time()
    try:
        proc = subprocess.run(
            [str(SCRIPT), "start", str(directory)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode != 0:
            logs = "".join(p.read_text()[-2000:] for p in directory.glob("*.log"))
            raise RuntimeError(f"local Slurm did not start: {proc.stderr}\n{logs}")
        conf = str(directory / "slurm.conf")
        yield {"SLURM_CONF": conf, "BENCH_SLURM_STARTUP": f"{time.time() - started:.2f}"}
    finally:
        subprocess.run(
            [str(SCRIPT), "stop", str(directory)], env=env, capture_output=True, timeout=120
        )
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


def squeue(job: str, env: dict[str, str]) -> dict[str, str]:
    """``{task's Slurm id: state}`` of a job (array)'s queued and running tasks."""
    out = subprocess.run(
        ["squeue", "-h", "-r", "-j", job, "-o", "%i %T"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    ).stdout
    return dict(line.split()[:2] for line in out.splitlines() if line.strip())

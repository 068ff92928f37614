"""``bench train`` as a Slurm batch job: checkpoint when warned, requeue itself, resume its run.

A bare ``bench train`` in an sbatch script (``exec bench train ...`` with
``#SBATCH --signal=B:USR1@120``, or ``srun bench train ...`` with ``--signal=USR1@120``)
handles Slurm's signals as a sweep worker does (:mod:`bench.training.preemption`):
the run saves ``last.ckpt`` at the end of the current step and stops. After the
pre-timeout signal (USR1/USR2) the job requeues itself (``scontrol requeue``);
after SIGTERM (preemption, ``scontrol requeue``, ``scancel``) Slurm decides.

A requeued job runs the same script, so the same ``bench train`` command, again
under the same ``SLURM_JOB_ID``: :func:`job_run_dir` finds the run that command
started in ``<out_dir>/.slurm-jobs/<job id>-<hash of its arguments>`` (written before
training starts) and the command resumes that run instead of starting a new one,
exactly as ``bench train --resume`` would; a run that had already finished is not
trained again (a script of several commands requeues safely).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench import records
from bench.training.cluster import slurm_rank, started_by_slurm

JOBS_DIR = ".slurm-jobs"  # in tracking.out_dir; bench ls skips dot-directories


def batch_job(env: Mapping[str, str] | None = None) -> str | None:
    """This process's Slurm job id when it runs inside a (non-interactive) Slurm job."""
    env = os.environ if env is None else env
    if env.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return None  # salloc's shell: Ctrl-C and --resume, as on a workstation
    job = env.get("SLURM_JOB_ID")
    return job if job and job.isdigit() else None


def marker(out_dir: str | Path, job: str, command: Sequence[str]) -> Path:
    """Where a job records the run of one command (several commands of one script: several)."""
    digest = hashlib.sha1(json.dumps(list(command)).encode()).hexdigest()[:12]
    return Path(out_dir) / JOBS_DIR / f"{job}-{digest}"


def job_run_dir(out_dir: str | Path, job: str, command: Sequence[str]) -> Path | None:
    """The run this command started in this job before the job was requeued, if any."""
    try:
        return Path(marker(out_dir, job, command).read_text().strip())
    except OSError:
        return None


def ranks_stamp(job: str, devices: int, nodes: int) -> str | None:
    """A new run's name stamp that every rank of a DDP job step computes alike, else None
    (one process: the usual time stamp; the marker finds the run after a requeue)."""
    if not started_by_slurm(devices, nodes):
        return None
    return f"slurm{job}.{os.environ.get('SLURM_STEP_ID', '0')}"


def remember(out_dir: str | Path, job: str, command: Sequence[str], run_dir: Path) -> None:
    """Record the job's run before it trains (only rank 0: the other ranks follow it)."""
    if slurm_rank() == 0:
        records.atomic_write(marker(out_dir, job, command), f"{run_dir.resolve()}\n")


def requeue(job: str) -> bool:
    """``scontrol requeue JOB`` (rank 0 only); True when Slurm took it."""
    if slurm_rank() != 0:
        return False
    proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, timeout=60)
    return proc.returncode == 0

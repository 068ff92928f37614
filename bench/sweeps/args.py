"""Command-line arguments of ``bench sweep``, ``bench worker`` and ``bench dashboard``.

Kept apart from the code that reads them so that building the ``bench`` parser
(``bench --help``, ``bench variants``, ...) imports nothing heavy: this module
imports only the standard library, never Optuna, Lightning or torch.
:func:`check_numbers` checks the numeric options the same way, before the command
loads them (at call time it imports bench's config errors and ``cpu_slots``, both light).
"""

from __future__ import annotations

import argparse
import math
import os

STORAGE_ENV = "BENCH_SWEEP_STORAGE"  # how the launcher hands workers the storage URL
# How a worker tells its launcher (or Slurm job) why it stopped.
EXIT_INTERRUPTED = 130
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by a preemption signal; run the worker again later


def add_sweep_arguments(p: argparse.ArgumentParser) -> None:
    """``bench sweep SPEC [--workers N] [--devices IDS] [--storage URL] [--out DIR]``."""
    p.add_argument("spec", help="sweep spec YAML, or an existing sweep directory to resume")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: one per GPU group, or 1 on CPU)",
    )
    p.add_argument(
        "--devices",
        default=None,
        help="GPU ids, e.g. 0,1 ('cpu' for CPU slots; default: all visible GPUs)",
    )
    p.add_argument(
        "--storage",
        default=None,
        help="Optuna storage URL (default: journal file in the sweep directory)",
    )
    p.add_argument("--out", default=None, help="sweep directory (default: runs/sweeps/NAME)")
    p.add_argument(
        "--extend",
        action="store_true",
        help="grow an existing sweep with a spec that only adds (more seeds, trials, axis values)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list cells, tuning points, runs and an estimated time with the workers this "
        "command would use; start nothing (with --launcher slurm: also the job array; nothing "
        "submitted)",
    )
    add_slurm_arguments(p)


# Flags of the Slurm launcher (the spec's `launcher:` keys; flags win), by their dest.
SLURM_FLAGS = (
    "partition",
    "account",
    "qos",
    "time",
    "gpus_per_worker",
    "cpus_per_worker",
    "mem",
    "sbatch",
    "signal_delay",
    "nodes",
    "tasks_per_node",
)


def add_slurm_arguments(p: argparse.ArgumentParser) -> None:
    """``--launcher slurm`` and its options (also the keys of the spec's ``launcher:``)."""
    g = p.add_argument_group("Slurm launcher (--launcher slurm)")
    g.add_argument(
        "--launcher",
        choices=("local", "slurm"),
        default=None,
        help="local worker processes, or one Slurm job array (default: the spec's launcher.name)",
    )
    g.add_argument("--partition", default=None, help="Slurm partition")
    g.add_argument("--account", default=None, help="Slurm account")
    g.add_argument("--qos", default=None, help="Slurm quality of service")
    g.add_argument(
        "--time", default=None, help="time limit of each worker (MIN, H:MM:SS or D-HH:MM:SS)"
    )
    g.add_argument(
        "--gpus-per-worker",
        type=int,
        default=None,
        help="GPUs per worker (--gres=gpu:N a node; with several tasks, one a task)",
    )
    g.add_argument(
        "--cpus-per-worker", type=int, default=None, help="CPUs per worker (default: 1 a task)"
    )
    g.add_argument(
        "--nodes", type=int, default=None, help="nodes per worker (a DDP trial over all of them)"
    )
    g.add_argument(
        "--tasks-per-node",
        type=int,
        default=None,
        help="Slurm tasks (DDP ranks, one a GPU) per node of each worker",
    )
    g.add_argument("--mem", default=None, help="memory per worker (a node, with --nodes), e.g. 16G")
    g.add_argument(
        "--sbatch",
        action="append",
        default=None,
        metavar="OPTION",
        help="an extra sbatch option, e.g. --sbatch=--constraint=a100 (repeatable)",
    )
    g.add_argument(
        "--signal-delay",
        type=int,
        default=None,
        help="seconds before the time limit that Slurm signals a worker to checkpoint",
    )
    g.add_argument(
        "--cancel", action="store_true", help="cancel the sweep's queued and running Slurm jobs"
    )


def add_worker_arguments(p: argparse.ArgumentParser) -> None:
    """``bench worker SPEC [--storage URL] [--out DIR] [--worker-id ID] [--threads N]``."""
    p.add_argument("spec", help="sweep spec YAML, or an existing sweep directory")
    p.add_argument(
        "--storage",
        default=os.environ.get(STORAGE_ENV),
        help=f"Optuna storage URL (default: ${STORAGE_ENV}, else the sweep's journal file)",
    )
    p.add_argument("--out", default=None, help="sweep directory (default: runs/sweeps/NAME)")
    p.add_argument("--worker-id", default=None, help="name of this worker (default: its pid)")
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None, help="torch threads for this worker")
    p.add_argument("--prepared", action="store_true", help=argparse.SUPPRESS)  # by the launcher
    p.add_argument(
        "--ddp-tasks",
        action="store_true",
        help="run under srun: every task of the job step joins; task 0 claims each trial "
        "and all tasks train it with DDP",
    )


def add_dashboard_arguments(p: argparse.ArgumentParser) -> None:
    """``bench dashboard SWEEP [--host H] [--port P] [--storage URL]``."""
    p.add_argument("sweep", help="sweep directory (or a storage URL)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port to serve on (default: 8080)")
    p.add_argument("--storage", default=None, help="storage URL when the sweep's is not recorded")


def check_numbers(
    workers: int | None = None, threads: int | None = None, deadline: float | None = None
) -> None:
    """``--workers``, ``--threads`` and ``--deadline`` in range, else a one-line ConfigError.

    The launcher and the worker check through here, and ``bench sweep`` / ``bench worker``
    call it before torch, Optuna or Lightning load: a bad number costs no start-up time.
    """
    from bench.config.errors import ConfigError
    from bench.training.resources import cpu_slots

    if workers is not None and workers < 1:
        raise ConfigError(f"--workers={workers}: allowed: an integer >= 1")
    if threads is not None and not 1 <= threads <= cpu_slots():
        raise ConfigError(
            f"--threads={threads}: allowed: 1..{cpu_slots()} (this process's CPU slots)"
        )
    if deadline is not None and not math.isfinite(deadline):
        raise ConfigError(f"--deadline={deadline}: allowed: a finite time in epoch seconds")

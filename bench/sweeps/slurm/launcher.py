"""``bench sweep SPEC --launcher slurm``: the sweep's workers as one Slurm job array, via submitit.

Each array task runs one ``bench worker`` (:class:`SlurmWorker`, the same entry
point as every launcher; a worker of several Slurm tasks runs it in each task,
task 0 claiming and every task one DDP rank, :mod:`bench.sweeps.slurm.ddp_tasks`)
against the sweep's shared storage: a PostgreSQL (any
SQLAlchemy) URL, or a journal file on a filesystem every node mounts. Slurm
places the tasks; submitit writes the batch script and runs the worker on the
node; Optuna's storage coordinates the trials. The command returns after
submission and records the job in ``slurm/jobs.json`` of the sweep directory,
which ``bench status`` (Slurm state of each worker) and ``--cancel`` read.

Preemption: submitit asks Slurm for ``--signal=USR2@signal_delay`` (the
pre-timeout signal); SIGTERM comes with preemption, ``scontrol requeue`` and
``scancel``. A worker checkpoints its trial, puts it back for resumption and
exits (:mod:`bench.training.preemption`, :mod:`bench.sweeps.recovery.resume`); after the
pre-timeout signal it also requeues its own array task, so the sweep goes on
past the time limit. Any worker, requeued or not, resumes the trial.

Everything is checked before anything is submitted or written, including the
options themselves against the cluster (``sbatch --test-only``): a bad
partition, account, QoS, GPU count or storage is one line and exit 2. The
options live in :mod:`bench.sweeps.slurm.options`, the checks in
:mod:`bench.sweeps.slurm.checks`; this module submits, reads the job's states
and cancels it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import records
from bench.config import ConfigError
from bench.sweeps.args import STORAGE_ENV
from bench.sweeps.layout import (
    DEFAULT_ROOT,
    WORKERS,
    Sweep,
    is_sweep_dir,
    read_sweep_json,
    resolve_spec,
)
from bench.sweeps.slurm.checks import check_cluster, check_devices, check_shared_storage
from bench.sweeps.slurm.options import (
    executor_parameters,
    launcher_options,
    sbatch_options,
    worker_gpus,
)
from bench.sweeps.spec import LauncherSpec, SweepSpec
from bench.sweeps.storage import default_storage

SLURM_DIR = "slurm"  # in the sweep directory: submitit's scripts, pickles, logs; jobs.json
JOBS_JSON = "jobs.json"
ACTIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING"})

# ----------------------------------------------------------------------------- the job


@dataclass(frozen=True)
class SlurmWorker:
    """What each array task runs: ``bench worker SWEEP_DIR`` in this process.

    The storage URL travels inside this (pickled, in the 0700 ``slurm/``
    directory), not on a command line. After a pre-timeout signal the worker has
    checkpointed and released its trial; it then requeues its own array task so
    that the sweep continues past the time limit.
    """

    sweep_dir: str
    storage: str
    threads: int  # CPUs of each task
    gpus: int | None = None  # GPUs of each node: Slurm must have given this many
    ranks: int = 1  # tasks of the worker: more than 1 trains each trial over all of them

    def __call__(self, task: int) -> int:
        import signal

        import submitit

        from bench.cli import main
        from bench.sweeps.args import EXIT_PREEMPTED
        from bench.training.preemption import PREEMPTION

        env = submitit.JobEnvironment()
        os.environ[STORAGE_ENV] = self.storage
        gpus = worker_gpus()
        if self.gpus is None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU worker uses no GPU it was not given
        elif len(gpus) < self.gpus:
            print(
                f"error: Slurm gave worker {env.job_id} {len(gpus)} GPUs "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}); "
                f"the sweep asked for {self.gpus}",
                file=sys.stderr,
            )
            return 2
        worker_id = f"slurm-{env.job_id}"
        argv = ["worker", self.sweep_dir, "--worker-id", worker_id, "--prepared"]
        if self.ranks > 1:
            argv.append("--ddp-tasks")  # task 0 claims; every task is a DDP rank
        code = main([*argv, "--threads", str(self.threads)])
        requeue = PREEMPTION.signum not in (None, signal.SIGTERM) and env.global_rank == 0
        if code == EXIT_PREEMPTED and requeue:
            subprocess.run(["scontrol", "requeue", env.job_id], check=False, timeout=60)
        return code


@dataclass
class Submitted:
    job_id: str
    workers: int


def jobs_file(sweep_dir: Path) -> Path:
    return sweep_dir / SLURM_DIR / JOBS_JSON


def read_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """The job arrays submitted for this sweep, oldest first."""
    try:
        data = json.loads(jobs_file(sweep_dir).read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def planned_storage(spec: SweepSpec, from_dir: Path | None, storage: str | None, out: Any) -> str:
    """The storage URL ``prepare_sweep`` will use (computed before it creates anything)."""
    if storage:
        return storage
    sweep_dir = Path(out) if out is not None else (from_dir or DEFAULT_ROOT / spec.name)
    if is_sweep_dir(sweep_dir):
        recorded = read_sweep_json(sweep_dir).get("storage")
        if recorded and "***" in recorded:
            raise ConfigError(
                f"out={sweep_dir}: its storage URL has a hidden password; pass --storage URL"
            )
        if recorded:
            return recorded
    return default_storage(sweep_dir)


def submit_sweep(
    spec_path: str | Path,
    cli: dict[str, Any],
    storage: str | None = None,
    out: str | Path | None = None,
    command: str | None = None,
) -> int:
    """Check everything, prepare the sweep directory, submit the job array; exit code."""
    from bench.sweeps.layout import prepare_sweep
    from bench.sweeps.storage import quiet_optuna

    quiet_optuna()
    spec, from_dir = resolve_spec(spec_path)
    opts = launcher_options(spec, cli)
    workers = opts.workers or 1
    check_devices(spec, opts)
    check_shared_storage(planned_storage(spec, from_dir, storage, out))
    check_cluster(opts, workers)
    sweep_dir = Path(out) if out is not None else (from_dir or DEFAULT_ROOT / spec.name)
    running = [j for j in read_jobs(sweep_dir) if active_tasks(j["job_id"])]
    if running:
        raise ConfigError(
            f"{sweep_dir}: job array {running[-1]['job_id']} of this sweep is still queued or "
            "running; wait for it, or cancel it with --cancel"
        )
    sweep = prepare_sweep(spec_path, storage=storage, out=out, command=command)
    submitted = _submit(sweep, opts, workers)
    print(
        f"submitted Slurm job array {submitted.job_id} ({workers} worker"
        f"{'s' if workers > 1 else ''}) for sweep {sweep.spec.name}\n"
        f"  follow: bench status {sweep.dir}\n"
        f"  cancel: bench sweep {sweep.dir} --launcher slurm --cancel"
    )
    return 0


def dry_run_slurm(spec_path: str | Path, cli: dict[str, Any]) -> int:
    """``--dry-run --launcher slurm``: the plan of a local dry run for the job array that
    ``submit_sweep`` would submit (its worker count, its CPUs per task as threads), and
    the sbatch options of each worker; nothing is created or submitted. The step time
    is this machine's, not the cluster's: the line says so."""
    import shutil

    from bench.sweeps.preflight import check_cells, make_plan, print_plan

    spec, _ = resolve_spec(spec_path)
    opts = launcher_options(spec, cli)
    workers = opts.workers or 1
    check_devices(spec, opts)
    check_cells(spec, str(spec_path))
    print_plan(spec, make_plan(spec, opts.cpus_per_task), workers)
    print(f"(the step time is this machine's with {opts.cpus_per_task} thread(s); on the "
          "cluster's nodes, GPUs above all, a step can take much less)")  # fmt: skip
    accepted = ""
    if shutil.which("sbatch") is not None:
        check_cluster(opts, workers)  # sbatch --test-only: a refusal is one line, exit 2
        accepted = "; sbatch --test-only accepts it"
    print(f"would submit: one Slurm job array of {workers} worker(s), each "
          f"{' '.join(sbatch_options(opts))}{accepted}; nothing submitted")  # fmt: skip
    return 0


def _submit(sweep: Sweep, opts: LauncherSpec, workers: int) -> Submitted:
    import submitit

    folder = sweep.dir / SLURM_DIR
    folder.mkdir(mode=0o700, exist_ok=True)
    folder.chmod(0o700)  # the pickled worker holds the storage URL
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=10**6)
    executor.update_parameters(**executor_parameters(opts, f"bench-{sweep.spec.name}"))
    worker = SlurmWorker(
        str(sweep.dir.resolve()),
        sweep.storage_url,
        opts.cpus_per_task,
        opts.gpus_per_node,
        opts.ranks,
    )
    # One array task per worker (submitit submits a single worker as a plain job).
    tasks = [str(j.job_id) for j in executor.map_array(worker, list(range(workers)))]
    job_id = tasks[0].split("_")[0]
    jobs = read_jobs(sweep.dir)
    jobs.append(
        {
            "job_id": job_id,
            "tasks": tasks,  # the workers' Slurm ids: JOB_TASK, or JOB for a single worker
            "submitted": time.time(),
            "options": sbatch_options(opts),
        }
    )
    records.write_json(jobs_file(sweep.dir), jobs)
    return Submitted(job_id, workers)


# ----------------------------------------------------------------------------- state, cancel


def array_states(job_id: str) -> dict[str, tuple[str, str]]:
    """``{task's Slurm id: (Slurm state, node or pending reason)}`` of a job (array).

    From ``squeue`` (queued, running, and ended within the cluster's MinJobAge),
    then ``sacct`` when the cluster keeps accounting; tasks neither knows are left out.
    """
    out: dict[str, tuple[str, str]] = {}
    proc = subprocess.run(
        ["squeue", "-h", "-r", "-t", "all", "-j", job_id, "-o", "%i|%T|%R"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        jid, state, where = [*line.split("|"), "", ""][:3]
        out[jid] = (state, where)
    acct = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State,NodeList"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    for line in acct.stdout.splitlines() if acct.returncode == 0 else []:
        jid, state, where = [*line.split("|"), "", ""][:3]
        if jid not in out and state:
            out[jid] = (state.split()[0], where)
    return out


def active_tasks(job_id: str) -> list[str]:
    return [t for t, (state, _) in array_states(job_id).items() if state in ACTIVE]


def worker_rows(sweep_dir: Path) -> list[tuple[str, str, str, str]]:
    """(worker, Slurm state, node or reason, trial it runs) for the newest job array."""
    jobs = read_jobs(sweep_dir)
    if not jobs:
        return []
    job = jobs[-1]
    states = array_states(job["job_id"])
    rows = []
    for wid in job.get("tasks", []):
        state, where = states.get(wid, ("ENDED", "no longer known to Slurm"))
        trial = "-"
        path = sweep_dir / WORKERS / f"slurm-{wid}.json"
        try:
            info = json.loads(path.read_text())
            trial = f"{info['study'].split('/', 1)[-1]} #{info['number']}"
        except (OSError, ValueError, KeyError):
            pass
        rows.append((wid, state, where, trial))
    return rows


def cancel_sweep(spec_path: str | Path, out: str | Path | None = None) -> int:
    """``scancel`` every queued or running job array of the sweep; exit code."""
    spec, from_dir = resolve_spec(spec_path)
    sweep_dir = Path(out) if out is not None else (from_dir or DEFAULT_ROOT / spec.name)
    jobs = [j["job_id"] for j in read_jobs(sweep_dir) if active_tasks(j["job_id"])]
    if not jobs:
        print(f"{sweep_dir}: no queued or running Slurm job of this sweep", file=sys.stderr)
        return 0
    proc = subprocess.run(["scancel", *jobs], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise ConfigError(f"scancel {' '.join(jobs)}: {proc.stderr.strip() or proc.returncode}")
    print(
        f"cancelled Slurm job array {', '.join(jobs)}; running trials checkpoint and resume "
        f"when you submit again: bench sweep {sweep_dir} --launcher slurm"
    )
    return 0

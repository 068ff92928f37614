"""What the Slurm launcher checks before it submits anything (each failure: one line, exit 2).

The storage must be reachable from every node (PostgreSQL, or a journal on a shared
filesystem), Slurm itself must accept the job array (``sbatch --test-only``), and a
trial's ``train.devices`` must fit in one worker.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from bench.config import ConfigError
from bench.sweeps.slurm.options import sbatch_options
from bench.sweeps.spec import LauncherSpec, SweepSpec, build_cell_config
from bench.sweeps.storage import is_rdb, redact

# Filesystems every node of a cluster can mount (a journal file must live on one).
SHARED_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "beegfs",
        "ceph",
        "cephfs",
        "glusterfs",
        "fuse.glusterfs",
        "panfs",
        "wekafs",
        "cifs",
        "smb3",
        "afs",
        "orangefs",
        "fuse.juicefs",
        "fuse.sshfs",
        "virtiofs",
    }
)


def check_shared_storage(url: str) -> None:
    """Refuse a storage that workers on other nodes cannot reach (one line, ConfigError)."""
    if is_rdb(url):
        if url.startswith("sqlite"):
            raise ConfigError(
                f"--storage={redact(url)}: SQLite is a file on this machine, not safe for workers "
                "on several nodes; use a PostgreSQL URL or a journal file on a shared filesystem"
            )
        return
    fs = filesystem_type(Path(url))
    if fs not in SHARED_FILESYSTEMS:
        raise ConfigError(
            f"--storage={url}: a journal on a local filesystem ({fs}) cannot be seen by workers "
            "on other nodes; allowed: a PostgreSQL URL (postgresql://...) or a journal on a "
            "shared filesystem (NFS, Lustre, GPFS, BeeGFS, CephFS, ...)"
        )


def filesystem_type(path: Path) -> str:
    """The type of the filesystem ``path`` is (or would be) on, from /proc/mounts."""
    target = path.resolve()
    while not target.exists() and target != target.parent:
        target = target.parent
    best, kind = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = str(target) == point or str(target).startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def check_cluster(opts: LauncherSpec, workers: int) -> None:
    """Ask Slurm whether it would accept the job array, without submitting it."""
    if shutil.which("sbatch") is None:
        raise ConfigError(
            "--launcher slurm: no sbatch here (is this a Slurm login node? "
            "tools/local-slurm.sh starts a one-node cluster)"
        )
    cmd = [
        "sbatch",
        "--test-only",
        f"--array=0-{workers - 1}",
        *sbatch_options(opts),
        "--output=/dev/null",
        "--wrap=true",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        said = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()] or [
            proc.stderr.strip() or f"exit {proc.returncode}"
        ]
        raise ConfigError(
            f"--launcher slurm {' '.join(sbatch_options(opts))}: Slurm refuses it "
            f"({said[-1].strip()}){_partitions_hint(opts)}"
        )


def _partitions_hint(opts: LauncherSpec) -> str:
    if opts.partition is None:
        return ""
    proc = subprocess.run(["sinfo", "-h", "-o", "%R"], capture_output=True, text=True, timeout=30)
    names = sorted(set(proc.stdout.split())) if proc.returncode == 0 else []
    return f"; partitions here: {', '.join(names)}" if names else ""


def check_devices(spec: SweepSpec, opts: LauncherSpec) -> None:
    """A trial's ``train.devices`` must fit in one worker's GPUs (or CPU processes).

    A worker of several tasks gives each trial its layout (``train.nodes`` = nodes,
    ``train.devices`` = tasks per node): the spec may leave them at 1 or say the same.
    """
    train = build_cell_config(spec, {}, "base").train
    if opts.ranks > 1:
        for key, value, want in (
            ("devices", train.devices, opts.tasks_per_node),
            ("nodes", train.nodes, opts.nodes),
        ):
            if value not in (1, want):
                raise ConfigError(
                    f"train.{key}={value}: a worker of --nodes={opts.nodes} x "
                    f"--tasks-per-node={opts.tasks_per_node} tasks runs each trial on all of "
                    f"them; allowed: train.{key}={want} or leave it out"
                )
        return
    if train.nodes > 1:
        raise ConfigError(
            f"train.nodes={train.nodes}: a worker of one task runs on one node; allowed: "
            f"--nodes={train.nodes} --tasks-per-node={train.devices} (one task a rank)"
        )
    per_trial = train.devices
    have = opts.gpus_per_worker or opts.cpus_per_task
    what = "GPUs" if opts.gpus_per_worker else "CPUs"
    if per_trial > have:
        flag = "--gpus-per-worker" if opts.gpus_per_worker else "--cpus-per-worker"
        raise ConfigError(
            f"{flag}={have}: a trial needs train.devices={per_trial} {what}; "
            f"allowed: {flag} >= {per_trial}"
        )

"""The Slurm launcher's options: from the spec's ``launcher:`` section and the CLI to sbatch.

``launcher_options`` merges the two (the CLI wins) into a typed ``LauncherSpec``;
``sbatch_options`` and ``executor_parameters`` turn it into what ``sbatch --test-only``
and submitit's ``SlurmExecutor`` take. :mod:`bench.sweeps.slurm.launcher` submits with them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from bench.config import ConfigError
from bench.sweeps.spec import LauncherSpec, SweepSpec
from bench.validation import describe

# CLI flag of each launcher key, for messages.
FLAGS = {
    "workers": "--workers",
    "partition": "--partition",
    "account": "--account",
    "qos": "--qos",
    "time": "--time",
    "gpus_per_worker": "--gpus-per-worker",
    "cpus_per_worker": "--cpus-per-worker",
    "mem": "--mem",
    "sbatch": "--sbatch",
    "signal_delay": "--signal-delay",
    "nodes": "--nodes",
    "tasks_per_node": "--tasks-per-node",
}


def launcher_options(spec: SweepSpec, cli: dict[str, Any]) -> LauncherSpec:
    """The spec's ``launcher:`` section with the command-line flags given laid over it."""
    given = {k: v for k, v in cli.items() if v is not None and v != []}
    data = {**spec.launcher.model_dump(exclude_none=True), **given, "name": "slurm"}
    try:
        opts = LauncherSpec.model_validate(data)
    except ValidationError as e:
        raise ConfigError(
            describe(e, LauncherSpec, prefix="launcher", where=lambda k: _flag(k, given))
        ) from None
    _check_split(opts)
    return opts


def _check_split(opts: LauncherSpec) -> None:
    """A worker of several tasks splits its GPUs (one a rank) and CPUs evenly over them.

    Named by their flags (the spec's ``launcher:`` keys are the same words).
    """
    if opts.ranks == 1:
        return
    name = FLAGS.__getitem__
    layout = (
        f"{name('nodes')}={opts.nodes} x {name('tasks_per_node')}={opts.tasks_per_node} "
        f"= {opts.ranks} tasks"
    )
    gpus = opts.gpus_per_worker
    if gpus is not None and gpus != opts.ranks:
        raise ConfigError(
            f"{name('gpus_per_worker')}={gpus} does not match {layout}: each task is one DDP "
            f"rank on one GPU; allowed: {name('gpus_per_worker')}={opts.ranks}, or as many "
            f"tasks as GPUs"
        )
    cpus = opts.cpus_per_worker
    if cpus is not None and cpus % opts.ranks:
        raise ConfigError(
            f"{name('cpus_per_worker')}={cpus} does not split over {layout}; "
            f"allowed: a multiple of {opts.ranks}"
        )


def _flag(key: str, given: dict[str, Any]) -> str:
    """``launcher.mem`` as the user gave it: ``--mem`` when it came from the command line."""
    name = key.removeprefix("launcher.")
    return FLAGS.get(name, key) if name in given else key


def sbatch_options(opts: LauncherSpec) -> list[str]:
    """The sbatch options of one worker (what ``sbatch --test-only`` checks and submitit sets)."""
    out = [
        f"--nodes={opts.nodes}",
        f"--ntasks-per-node={opts.tasks_per_node}",
        f"--cpus-per-task={opts.cpus_per_task}",
    ]
    for key in ("partition", "account", "qos", "time", "mem"):
        value = getattr(opts, key)
        if value is not None:
            out.append(f"--{key}={value}")
    if opts.gpus_per_node:
        out.append(f"--gres=gpu:{opts.gpus_per_node}")
    return out + [_extra_option(line) for line in opts.sbatch]


def _extra_option(line: str) -> str:
    text = line.strip().removeprefix("#SBATCH").strip()
    if not re.fullmatch(r"--[a-z][a-z0-9-]*(=\S.*)?", text):
        raise ConfigError(
            f"--sbatch={line!r}: allowed: one sbatch option as --name or --name=value"
        )
    return text


def executor_parameters(opts: LauncherSpec, job_name: str) -> dict[str, Any]:
    """submitit ``SlurmExecutor.update_parameters`` arguments for ``opts``."""
    extra: dict[str, Any] = {}
    for option in [_extra_option(line) for line in opts.sbatch]:
        name, _, value = option[2:].partition("=")
        extra[name.replace("-", "_")] = value if value else True
    params: dict[str, Any] = {
        "job_name": job_name,
        "cpus_per_task": opts.cpus_per_task,
        "nodes": opts.nodes,
        # One task: one worker process (a DDP trial's ranks are then Lightning's); more:
        # every task runs the worker and is one rank of each trial (bench.sweeps.slurm.ddp_tasks).
        "ntasks_per_node": opts.tasks_per_node,
        "signal_delay_s": opts.signal_delay,
        "stderr_to_stdout": True,
        "additional_parameters": extra,
    }
    for key in ("partition", "account", "qos", "mem"):
        if getattr(opts, key) is not None:
            params[key] = getattr(opts, key)
    # None drops submitit's default of 5 minutes: no --time, the partition's default applies
    params["time"] = minutes(opts.time) if opts.time is not None else None
    if opts.gpus_per_node:
        params["gres"] = f"gpu:{opts.gpus_per_node}"
    return params


def minutes(limit: str) -> int:
    """Slurm's time formats (MIN, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]) in whole minutes, rounded up."""
    days = 0
    if "-" in limit:
        d, limit = limit.split("-", 1)
        days = int(d)
        parts = [int(p) for p in limit.split(":")] + [0, 0]
        h, m, s = parts[0], parts[1], parts[2]
    else:
        parts = [int(p) for p in limit.split(":")]
        if len(parts) == 1:
            return parts[0]
        h, m, s = ([0, *parts] if len(parts) == 2 else parts)[:3]
    total = ((days * 24 + h) * 60 + m) * 60 + s
    return max(-(-total // 60), 1)


def worker_gpus(env: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs Slurm gave this worker: ``CUDA_VISIBLE_DEVICES`` as Slurm sets it for ``--gres``.

    Slurm numbers the allocated GPUs ``0..N-1`` in ``CUDA_VISIBLE_DEVICES`` (its
    device cgroup hides the rest) or names the physical ones; either way this is
    the list a trial's ``train.devices`` must fit in. Unset or empty: no GPU.
    """
    visible = (os.environ if env is None else env).get("CUDA_VISIBLE_DEVICES", "")
    return [d.strip() for d in visible.split(",") if d.strip() and d.strip() != "NoDevFiles"]

"""Where a run's DDP ranks come from: Lightning starts them, or Slurm already did.

Two layouts, both read from the environment Slurm (or nothing) gives a process:

- **one process, several devices** (a workstation, or a one-task Slurm worker
  owning ``train.devices`` GPUs): Lightning starts the extra ranks itself by
  re-running the command (:class:`~lightning.fabric.plugins.environments.LightningEnvironment`);
- **one process per rank, started by Slurm** (``srun`` with
  ``--nodes=N --ntasks-per-node=M``, ``train.nodes=N``, ``train.devices=M``): every
  task is one rank of one DDP group, Lightning's
  :class:`~lightning.fabric.plugins.environments.SLURMEnvironment` reads the
  world size from ``SLURM_NTASKS``, the rank from ``SLURM_PROCID`` and the main
  address from the first node of ``SLURM_NODELIST``.

Either way the ranks are PyTorch DDP (Li et al. 2020, "PyTorch Distributed:
Experiences on Accelerating Data Parallel Training"): one model replica a rank,
gradients all-reduced every step.

Plain Python (Lightning only inside :func:`cluster_plugins`): ``resources.py``
asks how many processes a run starts here without importing Lightning.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from bench.config import ConfigError


def started_by_slurm(devices: int, nodes: int, env: Mapping[str, str] | None = None) -> bool:
    """True when Slurm started this run's ranks: a job step of ``nodes x devices`` tasks, > 1.

    An interactive allocation (job name ``bash`` or ``interactive``, as Lightning
    reads it) starts no ranks: there Lightning does, as on a workstation.
    """
    env = os.environ if env is None else env
    ranks = devices * nodes
    if ranks == 1 or env.get("SLURM_JOB_NAME") in ("bash", "interactive"):
        return False
    return env.get("SLURM_NTASKS") == str(ranks) and "SLURM_PROCID" in env


def processes_here(devices: int, nodes: int, env: Mapping[str, str] | None = None) -> int:
    """Processes this run starts in this process's CPU slots: 1 under Slurm's ranks, else devices."""
    return 1 if started_by_slurm(devices, nodes, env) else devices


def check_layout(devices: int, nodes: int, env: Mapping[str, str] | None = None) -> None:
    """Refuse ``train.nodes > 1`` where no other node can join (one line, ConfigError).

    Several nodes need one process a rank on each: Slurm's tasks, or a launcher
    that sets ``NODE_RANK`` and ``MASTER_ADDR`` (Lightning's own environment).
    Otherwise the rendezvous would wait for nodes that never come.
    """
    env = os.environ if env is None else env
    if nodes == 1 or started_by_slurm(devices, nodes, env):
        return
    if "NODE_RANK" in env and "MASTER_ADDR" in env:
        return
    raise ConfigError(
        f"train.nodes={nodes}: no other node can join this run; start one process a rank "
        f"under srun (--nodes={nodes} --ntasks-per-node={devices}), or set NODE_RANK and "
        f"MASTER_ADDR on each node; allowed here: train.nodes=1"
    )


def slurm_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's rank in a Slurm job step (``SLURM_PROCID``; 0 outside one)."""
    env = os.environ if env is None else env
    return int(env.get("SLURM_PROCID", "0") or 0)


def cluster_plugins(
    devices: int, nodes: int = 1, env: Mapping[str, str] | None = None
) -> list[Any]:
    """Lightning plugins for where this process runs.

    Slurm started the ranks: :class:`SLURMEnvironment` without Lightning's own
    requeue (a sweep worker checkpoints and requeues itself,
    :mod:`bench.training.preemption`). A one-task Slurm job with ``devices > 1``:
    :class:`LightningEnvironment`, so that Lightning starts the ranks on that node
    (it would otherwise read the one-task layout and refuse ``devices > 1``).
    Otherwise Lightning's own detection.
    """
    from lightning.fabric.plugins.environments import LightningEnvironment, SLURMEnvironment

    env = os.environ if env is None else env
    if started_by_slurm(devices, nodes, env):
        return [SLURMEnvironment(auto_requeue=False)]
    if devices > 1 and env.get("SLURM_NTASKS") == "1":
        return [LightningEnvironment()]
    return []

"""A DDP trial inside a sweep worker: rank 0 runs the trial, Lightning's extra ranks join it.

Lightning starts a DDP trial's extra ranks by re-running the worker's command with
``LOCAL_RANK`` set; such a process is a *follower*: it reads rank 0's trial config
from :data:`TRIAL_CONFIG_ENV` and trains in step with it, never touching the
storage. A worker whose DDP ranks are Slurm tasks (``--tasks-per-node``, ``--nodes``)
has followers of another kind, :mod:`bench.sweeps.slurm.ddp_tasks`; both train through
:func:`train_as_follower`. :func:`ddp_isolated` leaves no process group or DDP environment behind a
trial, so the worker's next trial starts its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.config import RunConfig

TRIAL_CONFIG_ENV = "BENCH_SWEEP_TRIAL_CONFIG"  # DDP ranks > 0 read their trial's config here
PRUNE_METRIC_ENV = "BENCH_SWEEP_PRUNE_METRIC"  # and whether rank 0 prunes (collectives must match)

DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextmanager
def ddp_isolated() -> Iterator[None]:
    """Leave no DDP state behind a trial: the next trial of this worker starts its own group.

    Lightning's launcher writes MASTER_PORT / LOCAL_RANK into os.environ (a later
    Trainer would take LOCAL_RANK as "launched externally" and wait forever) and
    keeps the process group alive.
    """
    saved = {k: os.environ.get(k) for k in DDP_ENV}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ddp_follower() -> tuple[Path, str] | None:
    """On a DDP rank > 0 launched by Lightning: (trial config, prune metric or ""); else None."""
    if os.environ.get("LOCAL_RANK", "0") != "0" and os.environ.get(TRIAL_CONFIG_ENV):
        return Path(os.environ[TRIAL_CONFIG_ENV]), os.environ.get(PRUNE_METRIC_ENV, "")
    return None


def run_ddp_follower(config: Path, metric: str) -> int:
    """Join rank 0's trial as another DDP rank (no storage access: rank 0 reports)."""
    from bench.config import build_run_config

    train_as_follower(build_run_config(config), metric)
    return 0


def train_as_follower(cfg: RunConfig, metric: str, resume: Path | None = None) -> None:
    """Train rank 0's trial ``cfg`` as this DDP rank: same steps, no records of its own.

    ``resume``: the run directory rank 0 resumes from (its ``last.ckpt``). Lightning's
    extra ranks (``LOCAL_RANK``) and Slurm's (``SLURM_PROCID``) both land here.
    """
    from bench.sweeps.pruning import PruningCallback
    from bench.training.run import train_run

    cfg = cfg.model_copy(deep=True)
    rank = os.environ.get("LOCAL_RANK") or os.environ.get("SLURM_PROCID") or "1"
    # Rank 0 owns the run directory and the W&B run; this rank keeps its own
    # records in a subdirectory (train_run refuses a directory that holds a run).
    cfg.tracking.run_dir = str(Path(cfg.tracking.run_dir or ".") / f"ddp-rank{rank}")
    cfg.tracking.mode = "disabled"
    train_run(cfg, [PruningCallback(None, metric)] if metric else [], resume=resume)

"""Opening a run's directory: a fresh one, a resumed one, or the one a DDP rank joins.

Only the primary process (rank 0) writes records; the extra ranks Lightning
starts find the directory through ``BENCH_RUN_DIR``, which the primary sets
before the Trainer launches them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import records
from bench.config import ConfigError, RunConfig, dump_yaml
from bench.training.checkpoint import checkpoint_step
from bench.training.cluster import slurm_rank
from bench.training.prepare import Prepared

RUN_DIR_ENV = "BENCH_RUN_DIR"


@dataclass(frozen=True)
class OpenedRun:
    """Where a run is recorded and where it starts: ``ckpt_path`` is None for a fresh run."""

    run_dir: Path
    ckpt_path: Path | None
    start_step: int
    primary: bool  # False in the extra DDP ranks: they leave every record to rank 0


def sdpa_kernels(prep: Prepared) -> dict[str, str]:
    """The SDPA kernel of each kind of attention layer of this run, as PyTorch selects it here."""
    from bench.diagnostics.throughput.peak import matmul_dtype
    from bench.model.sdpa_kernels import kernel_summary

    cfg = prep.cfg
    device = torch.device("cuda" if prep.accelerator == "gpu" else "cpu")
    return kernel_summary(cfg.model, cfg.task.seq_len, device, matmul_dtype(prep.precision))


def new_run_dir(cfg: RunConfig, stamp: str | None = None) -> Path:
    """``tracking.run_dir`` if given, else a fresh ``out_dir/<name>-<time>``.

    ``stamp`` replaces the time (a Slurm job step's id: the same on every rank of a
    DDP run, so never renumbered).
    """
    if cfg.tracking.run_dir:
        return Path(cfg.tracking.run_dir)
    m = cfg.model
    name = (
        cfg.tracking.name
        or f"{cfg.task.name}-{cfg.variant or m.arch}-{m.norm_placement}-{m.pos_encoding}"
    )
    base = Path(cfg.tracking.out_dir) / f"{name}-{stamp or time.strftime('%Y%m%d-%H%M%S')}"
    path, n = base, 1
    while path.exists() and stamp is None:
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def primary_process() -> bool:
    """False in the extra DDP ranks: Lightning's (LOCAL_RANK or NODE_RANK > 0) or Slurm's
    tasks past the first (``SLURM_PROCID`` > 0, :mod:`bench.training.cluster`)."""
    env = os.environ
    lightning_rank0 = env.get("LOCAL_RANK", "0") == "0" and env.get("NODE_RANK", "0") == "0"
    return lightning_rank0 and slurm_rank() == 0


def open_run(prep: Prepared, resume: Path | None, command: str | None) -> OpenedRun:
    """Create (or reopen, with ``resume``) the run directory and record that the run started.

    A resumed run's ``metrics.csv`` is cut back to its checkpoint's step.
    """
    cfg = prep.cfg
    primary = primary_process()
    ckpt_path: Path | None = None
    start_step = 0
    if not primary:
        # A DDP rank Lightning started by re-running the command: it trains in
        # step with rank 0 but leaves every record to it.
        # (Ranks Slurm started inherit nothing: their config names the same directory.)
        run_dir = Path(os.environ.get(RUN_DIR_ENV) or new_run_dir(cfg))
        ckpt_path = run_dir / records.LAST_CKPT if resume is not None else None
        start_step = checkpoint_step(ckpt_path) if ckpt_path else 0
    elif resume is not None:
        run_dir = Path(resume)
        ckpt_path = run_dir / records.LAST_CKPT
        if prep.resume_step is None:  # prepare() reads the checkpoint of a resumed run
            raise ConfigError(f"--resume {run_dir}: no checkpoint at {ckpt_path}")
        start_step = prep.resume_step
        records.truncate_metrics(run_dir, start_step)
    else:
        run_dir = new_run_dir(cfg)
        if (run_dir / records.STATUS).exists():
            raise ConfigError(f"tracking.run_dir={run_dir}: already holds a run (use --resume)")
        run_dir.mkdir(parents=True, exist_ok=True)
        records.atomic_write(run_dir / records.CONFIG, dump_yaml(cfg))
    if primary:
        device = torch.cuda.get_device_name() if prep.accelerator == "gpu" else "cpu"
        manifest = records.manifest(cfg.train.seed, command, device)
        manifest["precision"] = prep.choice.record()  # what train.precision resolved to, and why
        manifest["sdpa_kernels"] = sdpa_kernels(prep)
        records.write_json(run_dir / records.MANIFEST, manifest)
        records.write_status(run_dir, "running", started_step=start_step)
        os.environ[RUN_DIR_ENV] = str(run_dir)  # the DDP ranks Lightning starts inherit it
    return OpenedRun(run_dir, ckpt_path, start_step, primary)

"""Building a run's Lightning Trainer: the module, its data, loggers and callbacks.

:func:`assemble` puts together what :func:`bench.training.run.train_run` fits:
the :class:`~bench.training.module.BenchModule`, the task's data with this
run's resumable training loader, the periodic checkpoint, the validation
tracker, the diagnostics, the preemption checkpoint and the progress display.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import lightning as L
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger

from bench import records
from bench.config import RunConfig
from bench.diagnostics import build_callbacks
from bench.diagnostics.guard import DiagnosticErrors
from bench.tasks.base import BenchDataModule
from bench.training.checkpoint_io import AtomicCheckpointIO
from bench.training.cluster import cluster_plugins
from bench.training.csvlog import MetricsCSVLogger
from bench.training.interrupt import HonourCtrlC
from bench.training.loader import MapDataset, ResumableLoader
from bench.training.module import BenchModule
from bench.training.preemption import PreemptionCheckpoint
from bench.training.prepare import Prepared
from bench.training.progress import RunProgress
from bench.training.rundir import OpenedRun
from bench.training.validation_tracker import TrackValidation


class RunData(L.LightningDataModule):
    """A task's data as Lightning's DataModule; training draws from this run's loader.

    Everything else (val loaders, vocab_size, metrics, baseline, ...) is the task's.
    Without a ``loader``, training draws from the task's own shuffled loader.
    """

    def __init__(self, task: BenchDataModule, loader: ResumableLoader | None = None) -> None:
        super().__init__()
        self.task, self.loader = task, loader

    def __getattr__(self, name: str) -> Any:
        if name in ("task", "loader"):  # not yet set: avoid recursing during __init__
            raise AttributeError(name)
        return getattr(self.task, name)

    def train_dataloader(self) -> Any:
        return self.task.train_dataloader() if self.loader is None else self.loader

    def val_dataloader(self) -> Any:
        return self.task.val_dataloader()


def make_loggers(cfg: RunConfig, opened: OpenedRun) -> list[Logger]:
    """``metrics.csv``, and W&B unless ``tracking.mode`` is disabled."""
    from bench.tracking import make_wandb_logger

    loggers: list[Logger] = [MetricsCSVLogger(opened.run_dir)]
    wandb_logger = make_wandb_logger(cfg, opened.run_dir)
    if wandb_logger is not None:
        loggers.append(wandb_logger)
    return loggers


@dataclass
class Assembled:
    """Everything a run fits and reads back afterwards."""

    trainer: L.Trainer
    module: BenchModule
    datamodule: BenchDataModule
    loader: ResumableLoader
    tracker: TrackValidation
    diagnostics: list[Callback]
    loggers: list[Logger]
    errors: DiagnosticErrors  # a failing diagnostic is recorded here, never fatal
    opened: OpenedRun

    def run_data(self) -> RunData:
        """The data to fit or validate on (a fresh wrapper each time, like a Trainer call's)."""
        return RunData(self.datamodule, self.loader)

    def record_status(self, status: str, reason: str = "", **extra: Any) -> None:
        """``status.json`` with the diagnostics' errors so far (the primary process only)."""
        if self.opened.primary:
            records.write_status(
                self.opened.run_dir, status, reason, **extra, diagnostic_errors=self.errors.messages
            )


def assemble(prep: Prepared, opened: OpenedRun, callbacks: Sequence[Callback]) -> Assembled:
    """The module, its data and a Trainer with every callback and logger of the run."""
    cfg, dm, run_dir = prep.cfg, prep.datamodule, opened.run_dir
    module = BenchModule(cfg, dm.eval_lengths)
    if cfg.train.compile:
        compile_model(module)
    train_set = dm.train_dataloader()
    loader = ResumableLoader(
        cast(MapDataset, train_set.dataset),  # every task's datasets are map-style
        cfg.task.batch_size,
        train_set.collate_fn,
        seed=cfg.train.seed,
    )
    loader.seek(opened.start_step)
    tracker = TrackValidation()
    t = cfg.train
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / records.CHECKPOINTS,
        save_last=True,
        save_top_k=0,
        every_n_train_steps=t.checkpoint_every or t.val_every,
    )
    preemption = PreemptionCheckpoint(run_dir / records.LAST_CKPT)
    errors = DiagnosticErrors()
    diagnostics = build_callbacks(cfg, run_dir, errors)
    loggers = make_loggers(cfg, opened)
    shown = f"{prep.precision} ({prep.choice.reason})"
    progress = RunProgress.for_run(cfg, run_dir, precision=shown) if opened.primary else None
    every = [checkpoint, tracker, *diagnostics, *callbacks, preemption, HonourCtrlC()]
    trainer = _trainer(prep, loggers, [*every, *([progress] if progress else [])], run_dir)
    return Assembled(trainer, module, dm, loader, tracker, diagnostics, loggers, errors, opened)


def compile_model(module: BenchModule) -> None:
    """``train.compile``: ``torch.compile`` the module's model in place (``nn.Module.compile``).

    In place, so the checkpoint's state_dict keys, the submodules the
    diagnostics hook into and the optimizer's parameters stay those of the
    plain model; the first steps pay the compilation.
    """
    module.model.compile()


def _trainer(
    prep: Prepared, loggers: list[Logger], callbacks: list[Callback], root: Path
) -> L.Trainer:
    t = prep.cfg.train
    return L.Trainer(
        max_steps=t.max_steps,
        max_epochs=-1,
        val_check_interval=t.val_every,
        check_val_every_n_epoch=None,
        log_every_n_steps=t.log_every,
        gradient_clip_val=t.grad_clip,
        precision=prep.precision,  # type: ignore[arg-type]  # choose_precision's values
        accelerator=prep.accelerator,
        devices=t.devices,
        num_nodes=t.nodes,
        strategy="ddp" if t.devices * t.nodes > 1 else "auto",
        plugins=[*cluster_plugins(t.devices, t.nodes), AtomicCheckpointIO()],
        deterministic=t.deterministic,
        logger=loggers,
        callbacks=callbacks,
        enable_progress_bar=False,  # bench.training.progress counts steps, not an epoch's batches
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=root,
    )

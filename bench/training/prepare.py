"""Validating a run before anything is written: device, memory, data and precision.

:func:`prepare` turns a :class:`~bench.config.RunConfig` into a :class:`Prepared`
run (the resolved config and its built data) or raises a one-line
:class:`~bench.config.ConfigError`; nothing is created on disk.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import cast

import torch

from bench import records
from bench.config import ConfigError, RunConfig
from bench.model import max_positions
from bench.tasks import build_datamodule
from bench.tasks.base import BenchDataModule
from bench.training.checkpoint import checkpoint_step
from bench.training.cluster import check_layout
from bench.training.loader import MapDataset
from bench.training.precision import PrecisionChoice, choose_precision
from bench.training.resources import check_fits


@dataclass
class Prepared:
    """A validated run: the resolved config and its data, nothing written yet."""

    cfg: RunConfig
    datamodule: BenchDataModule
    choice: PrecisionChoice  # the Trainer's precision and why (train.precision resolved)
    accelerator: str
    resume_step: int | None = None  # a resumed run: the step its (validated) checkpoint holds

    @property
    def precision(self) -> str:
        """The Lightning precision string the Trainer gets."""
        return self.choice.precision


def resolve_accelerator(cfg: RunConfig, cuda: bool) -> str:
    """``gpu`` or ``cpu``; a GPU asked for without CUDA, or fp16 AMP on CPU, is a ConfigError."""
    t = cfg.train
    if t.accelerator == "gpu" and not cuda:
        raise ConfigError(
            "train.accelerator='gpu' but no CUDA device is visible; allowed here: cpu, auto"
        )
    accelerator = "gpu" if t.accelerator == "gpu" or (t.accelerator == "auto" and cuda) else "cpu"
    if accelerator == "cpu" and t.precision == "16-mixed":
        raise ConfigError(
            "train.precision='16-mixed' needs a GPU; allowed on CPU: auto, 32-true, bf16-mixed"
        )
    return accelerator


def check_data(cfg: RunConfig, resume: Path | None = None) -> Prepared:
    """Validate a config against its task and resolve what depends on the data.

    Raises ConfigError (one line) for any problem, before anything is written; a
    resumed run's checkpoint is read (and refused if unsafe or broken) here too. The
    precision is left as set (``auto`` unresolved): a preflight check or a step timing
    needs the data, not the bf16 measurement :func:`prepare` adds.
    """
    cfg = cfg.model_copy(deep=True)
    accelerator = resolve_accelerator(cfg, torch.cuda.is_available())
    check_layout(cfg.train.devices, cfg.train.nodes)
    check_fits(cfg, accelerator)  # before the data or the model is allocated
    resume_step = _resume_step(resume) if resume is not None else None
    dm = build_datamodule(cfg.task, cfg.model.arch)
    dm.setup("fit")
    cfg.model.vocab_size = dm.vocab_size
    if cfg.model.rope_scaling != "none" and cfg.model.rope_original_len is None:
        cfg.model.rope_original_len = dm.train_positions  # RoPE scaling's training length
    n_train = len(cast(MapDataset, dm.train_dataloader().dataset))
    if cfg.task.batch_size > n_train:
        raise ConfigError(
            f"task.batch_size={cfg.task.batch_size} is larger than the training set "
            f"({n_train} examples of task {cfg.task.name!r}); allowed: 1..{n_train}"
        )
    longest = max_positions(cfg.model)  # None: the encoding has no length limit
    if longest is not None and dm.max_positions > longest:
        sinks = cfg.model.sink_tokens  # attention sinks take the first positions
        also = f" + model.sink_tokens={sinks}" if sinks else ""
        raise ConfigError(
            f"model.max_len={cfg.model.max_len} is shorter than the longest sequence the task feeds "
            f"({dm.max_positions}{also}, task.seq_len={cfg.task.seq_len} x eval_scales "
            f"{cfg.task.eval_scales}); a {cfg.model.pos_encoding} encoding has no position past "
            f"max_len: raise model.max_len to >= {dm.max_positions + sinks}"
        )
    unresolved = PrecisionChoice(cfg.train.precision, "not resolved: checked only")
    return Prepared(cfg, dm, unresolved, accelerator, resume_step)


def prepare(cfg: RunConfig, resume: Path | None = None) -> Prepared:
    """:func:`check_data`, then the precision the run trains in (``auto`` resolved).

    The precision needs the vocabulary, so it comes after the data; a resumed run
    keeps its recorded choice.
    """
    checked = check_data(cfg, resume)
    choice = choose_precision(checked.cfg, checked.accelerator, resume=resume)
    return replace(checked, choice=choice)


def _resume_step(run_dir: Path) -> int:
    """The step of the run's last checkpoint, read with the restricted unpickler."""
    ckpt = run_dir / records.LAST_CKPT
    if not ckpt.is_file():
        raise ConfigError(f"--resume {run_dir}: no checkpoint at {ckpt}")
    return checkpoint_step(ckpt)

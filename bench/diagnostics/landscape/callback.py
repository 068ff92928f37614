"""The training trajectory: :class:`LandscapeCallback` records it (read it with
:func:`bench.diagnostics.landscape.trajectory.load_trajectory`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import Tensor

from bench.diagnostics.base import Diagnostic
from bench.diagnostics.parameters import (
    flatten_params,
    trainable_params,
)
from bench.diagnostics.throughput.stopwatch import exclude_from_throughput
from bench.io import save_npz


class LandscapeCallback(Diagnostic):
    """Records a thinned trajectory of flat float32 parameter snapshots on CPU.

    Takes step 0 (the initial weights), every ``every`` optimizer steps, and the
    final step; writes ``out_dir/diagnostics/trajectory.npz`` at the end of
    training. Memory stays bounded: at most ``max_snapshots`` snapshots and
    ``max_bytes`` in total — when full, every other snapshot is dropped and
    ``every`` doubles, so the kept ones still span the whole run evenly.
    ``every=None`` spreads ``max_snapshots`` over the run's planned steps.

    Runs: ``on_train_start`` (step 0), ``on_train_batch_end`` (every ``every``
    steps), ``on_train_end`` (the last step; writes the file on global rank zero).
    Logs nothing; the landscape itself is computed from the file at the end of
    the run (:func:`bench.diagnostics.landscape_of`) or by ``bench landscape``.
    """

    name: ClassVar[str] = "landscape"
    metrics: ClassVar[str] = "landscape/"
    files: ClassVar[tuple[str, ...]] = ("trajectory.npz",)

    def __init__(
        self,
        out_dir: Path | str,
        every: int | None = None,
        max_snapshots: int = 40,
        max_bytes: int = 512 << 20,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.every = every
        self.max_snapshots = max_snapshots
        self.max_bytes = max_bytes
        self.steps: list[int] = []
        self.snapshots: list[Tensor] = []
        self.names: list[str] = []
        self.numels: list[int] = []
        self.cap = max_snapshots

    @property
    def path(self) -> Path:
        return self.out_dir / "diagnostics" / "trajectory.npz"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        params = trainable_params(pl_module)
        self.names, self.numels = list(params), [p.numel() for p in params.values()]
        per = 4 * sum(self.numels)
        self.cap = max(3, min(self.max_snapshots, self.max_bytes // max(per, 1)))
        if self.every is None:
            total = (
                trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
            )
            self.every = max(1, int(total) // (self.cap - 1))
        self._record(trainer.global_step, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        step = trainer.global_step
        if self.every and step % self.every == 0 and step not in self.steps:
            self._record(step, pl_module)
            if len(self.steps) > self.cap:
                self.steps, self.snapshots = self.steps[::2], self.snapshots[::2]
                self.every *= 2

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step not in self.steps:
            self._record(trainer.global_step, pl_module)
        if trainer.is_global_zero:
            save_npz(
                self.path,
                steps=np.asarray(self.steps, dtype=np.int64),
                params=torch.stack(self.snapshots).numpy(),
                names=np.asarray(self.names),
                numels=np.asarray(self.numels, dtype=np.int64),
            )

    def _record(self, step: int, pl_module: L.LightningModule) -> None:
        with exclude_from_throughput():
            flat = flatten_params(trainable_params(pl_module)).to("cpu", torch.float32, copy=True)
        self.steps.append(step)
        self.snapshots.append(flat)

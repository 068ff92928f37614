"""Throughput of a run: tokens/s, MFU against a known or measured peak, peak memory.

FLOPs per batch come from :mod:`bench.diagnostics.throughput.flops` (the 6N rule and its
conventions are explained there), the peak from :mod:`bench.diagnostics.throughput.peak`,
memory from :mod:`bench.diagnostics.throughput.peak_memory`. Time other diagnostics spend
inside :func:`~bench.diagnostics.throughput.stopwatch.exclude_from_throughput` is not
counted. ``bench throughput`` (several configs side by side, outside a run) is
:mod:`bench.cli.throughput`.

Logged keys: ``throughput/tokens_per_sec``, ``throughput/step_time`` (s),
``throughput/flops_per_sec``, ``throughput/mfu``, ``throughput/peak_mem_mb``,
``throughput/infer_tokens_per_sec``, ``throughput/peak_flops``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import torch
from lightning.fabric.utilities.throughput import Throughput

from bench.config import DiagnosticsConfig, ModelConfig
from bench.diagnostics.base import Diagnostic
from bench.diagnostics.batches import batch_size_of, batch_tokens
from bench.diagnostics.throughput.flops import flops_per_batch
from bench.diagnostics.throughput.peak import compute_dtype, peak_flops, refresh_matmul_peak
from bench.diagnostics.throughput.peak_memory import peak_memory_mb
from bench.diagnostics.throughput.stopwatch import (
    DIAGNOSTICS_TIME,
    exclude_from_throughput,
    sync_cuda,
)


class ThroughputDiagnostics(Diagnostic):
    """Training and inference throughput, MFU and peak memory of a run.

    Step time runs from ``on_train_batch_start`` to ``on_train_batch_end`` minus
    time spent in :func:`exclude_from_throughput` blocks (other diagnostics),
    so data loading, validation, checkpoints and diagnostics are not counted.
    FLOPs per batch come from :func:`measured_flops_per_batch` on the first
    batch's shapes (meta device). Rates are rolling averages over ``window``
    steps after ``warmup`` steps, computed by Lightning's ``Throughput`` (the
    engine of its ``ThroughputMonitor``, which cannot exclude diagnostics time),
    and logged with ``pl_module.log`` at the steps Lightning writes to its loggers
    (every ``log_every_n_steps``; at the others Lightning would only keep the latest
    value, so they are not logged: 400 steps of 6 keys cost 0.5 s on a tiny model).
    The rates and the peak memory (~0.4 ms a reading on CPU) are read at those steps,
    the run's last step and the steps a validation follows (where a pruner may stop
    the run), so :meth:`summary` keeps the last step's values; the step times are
    counted at every step. ``trainer.callback_metrics`` holds the values of the last
    logged step.
    Inference tokens/s is measured on the first validation loader (training
    length), forward only. :meth:`summary` gives whole-run averages.

    The peak is ``cfg.peak_flops`` if set, else :func:`bench.diagnostics.throughput.peak.peak_flops`.
    ``model_cfg`` defaults to ``pl_module.cfg.model``.

    Runs: ``on_train_start`` (the peak), around every training and validation
    batch (the clock), ``on_validation_epoch_end`` (inference rate); writes no
    files.
    """

    name: ClassVar[str] = "throughput"
    metrics: ClassVar[str] = "throughput/"

    def __init__(
        self,
        cfg: DiagnosticsConfig,
        *,
        model_cfg: ModelConfig | None = None,
        warmup: int = 3,
        window: int = 20,
        cache_path: Path | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.cfg, self.model_cfg = cfg, model_cfg
        self.warmup, self.window, self.cache_path = warmup, window, cache_path
        self.peak: float | None = None
        self.peak_source = ""
        self._device, self._precision = torch.device("cpu"), "32-true"
        self.flops_per_batch: int | None = None
        self._meter: Throughput | None = None
        self._t0 = self._ex0 = 0.0
        self._seen = 0
        self._time = 0.0
        self._tokens = self._samples = self._batches = 0
        self._val_time = 0.0
        self._val_tokens = 0
        self._last: dict[str, float] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        device = pl_module.device
        self._device, self._precision = device, str(trainer.precision)
        self.peak, self.peak_source = peak_flops(
            device, self._precision, override=self.cfg.peak_flops, cache_path=self.cache_path
        )
        remaining = (trainer.max_steps if trainer.max_steps > 0 else 10**9) - trainer.global_step
        window = max(2, min(self.window, remaining - self.warmup))
        self._meter = Throughput(available_flops=self.peak, window_size=window)
        self._seen = self._batches = self._tokens = self._samples = 0
        self._time = 0.0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        sync_cuda()
        self._t0, self._ex0 = self.clock(), DIAGNOSTICS_TIME.total

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        sync_cuda()
        dt = self.clock() - self._t0 - (DIAGNOSTICS_TIME.total - self._ex0)
        self._seen += 1
        if self.flops_per_batch is None:
            self.flops_per_batch = self._flops(pl_module, batch)
        if self._seen <= self.warmup or self._meter is None:
            return
        self._batches += 1
        self._samples += batch_size_of(batch)
        self._tokens += batch_tokens(batch)
        self._time += max(dt, 1e-9)
        self._meter.update(
            time=self._time,
            batches=self._batches,
            samples=self._samples,
            lengths=self._tokens,
            flops=self.flops_per_batch or None,
        )
        if not _read_this_step(trainer):
            return  # reading the peak memory costs ~0.4 ms: only where a value is kept
        m = self._meter.compute()
        if "device/batches_per_sec" not in m:
            return  # window not full yet
        out = {
            "throughput/tokens_per_sec": m["device/items_per_sec"],
            "throughput/step_time": 1.0 / m["device/batches_per_sec"],
            "throughput/peak_mem_mb": peak_memory_mb(pl_module.device),
            "throughput/peak_flops": float(self.peak or math.nan),
        }
        if "device/flops_per_sec" in m:
            out["throughput/flops_per_sec"] = m["device/flops_per_sec"]
            out["throughput/mfu"] = m.get("device/mfu", math.nan)
        self._last.update(out)
        if not _logged_this_step(trainer):
            return  # the run's last step or before a validation: kept for summary() only
        for k, v in out.items():
            pl_module.log(k, v, on_step=True, on_epoch=False, batch_size=1)

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        sync_cuda()
        self._t0, self._ex0 = self.clock(), DIAGNOSTICS_TIME.total

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dataloader_idx != 0 or batch_idx == 0:  # first batch: warm-up
            return
        sync_cuda()
        self._val_time += self.clock() - self._t0 - (DIAGNOSTICS_TIME.total - self._ex0)
        self._val_tokens += batch_tokens(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_time > 0:
            value = self._val_tokens / self._val_time
            self._last["throughput/infer_tokens_per_sec"] = value
            pl_module.log("throughput/infer_tokens_per_sec", value, batch_size=1)

    def summary(self) -> dict[str, float]:
        """Whole-run averages after warm-up (the latest value for memory and inference)."""
        out = dict(self._last)
        if self._time > 0:
            out["throughput/tokens_per_sec"] = self._tokens / self._time
            out["throughput/step_time"] = self._time / self._batches
            if self.flops_per_batch:
                fps = self.flops_per_batch * self._batches / self._time
                self._check_peak(fps)
                out["throughput/flops_per_sec"] = fps
                out["throughput/mfu"] = fps / self.peak if self.peak else math.nan
                out["throughput/peak_flops"] = float(self.peak or math.nan)
        return out

    def _check_peak(self, fps: float) -> None:
        """A measured peak below what this run achieved was measured on a busy
        machine: measure it again (kept in the cache if larger) before dividing."""
        if self.peak_source != "measured" or self.peak is None or fps <= self.peak:
            return
        with exclude_from_throughput():
            self.peak = refresh_matmul_peak(
                self._device, compute_dtype(self._precision), cache_path=self.cache_path
            )

    def _flops(self, pl_module: L.LightningModule, batch: Any) -> int:
        cfg = self.model_cfg or getattr(getattr(pl_module, "cfg", None), "model", None)
        if cfg is None or not isinstance(batch, Mapping):
            return 0
        with exclude_from_throughput():
            return flops_per_batch(cfg, batch)


def _read_this_step(trainer: L.Trainer) -> bool:
    """Whether this step's values are logged or may be the run's last: Lightning writes
    this step's logs, the run reaches ``max_steps``, or a validation follows (after which
    a pruner may stop the run). At the other steps the values would be replaced by the
    next step's before anything reads them."""
    if _logged_this_step(trainer) or trainer.global_step >= trainer.max_steps > 0:
        return True
    every = getattr(trainer, "val_check_batch", None)
    return not isinstance(every, int) or trainer.global_step % every == 0


def _logged_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning writes this training step's logged values to its loggers
    (``log_every_n_steps``, or a stopping step); True when that cannot be told."""
    connector = getattr(trainer, "_logger_connector", None)  # Lightning's own test of it
    return bool(getattr(connector, "should_update_logs", True))

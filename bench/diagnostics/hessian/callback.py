"""The Hessian measured during training: :class:`HessianCallback` and its figure."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_warn

from bench.config import ConfigError, HessianConfig
from bench.diagnostics.base import Diagnostic, datamodule_of
from bench.diagnostics.batches import move_to
from bench.diagnostics.hessian.plan import check_precision, resolve_steps
from bench.diagnostics.hessian.spectrum import HessianResult, hessian_analysis
from bench.diagnostics.loss import LossFn, loss_name, training_loss
from bench.diagnostics.run_figures import draw_figures
from bench.diagnostics.throughput.stopwatch import exclude_from_throughput
from bench.io import save_npz


def _first_val_batch(trainer: L.Trainer) -> Any:
    dm = datamodule_of(trainer)
    if dm is None or not hasattr(dm, "val_dataloader"):
        raise ConfigError(
            "diagnostics.hessian: no evaluation batch; pass batch= or use a datamodule "
            "with val_dataloader()"
        )
    loaders = dm.val_dataloader()
    if isinstance(loaders, Mapping):
        loaders = next(iter(loaders.values()))
    if isinstance(loaders, Sequence):
        loaders = loaders[0]
    return next(iter(loaders))


class HessianCallback(Diagnostic):
    """Measures the Hessian on a fixed evaluation batch at chosen points of training.

    At each of ``config.steps`` (fractions of the run's optimizer steps; 0 is before
    the first update) it runs :func:`hessian_analysis` in eval mode with
    autocast off (in float32 under a ``bf16-mixed`` run: second-order products
    in bf16 are mostly rounding noise), logs ``hessian/...`` scalars (and
    ``hessian/seconds``, its own wall time) to every logger at that step, and
    writes ``out_dir/diagnostics/hessian_step{N}.npz`` (``compute_dtype``
    records the precision) and, with ``figures``, ``.png`` (the density,
    :mod:`bench.diagnostics.run_figures`).
    The batch is the one given, else the first batch of the datamodule's first
    validation loader. Runs on global rank zero only.

    The loss is the training loss (:func:`~bench.diagnostics.loss.training_loss`:
    for a BenchModule, cross-entropy with ``train.label_smoothing``), so the curvature is that of the surface the
    optimizer descends; each npz records it as ``loss_fn`` (``loss`` is its value).

    Runs: ``setup`` (refuses an unsupported precision), ``on_train_start`` and
    ``on_train_batch_end`` (at the target steps), ``on_train_end`` (the final
    weights, when training stopped before a target).
    """

    name: ClassVar[str] = "hessian"
    metrics: ClassVar[str] = "hessian/"
    files: ClassVar[tuple[str, ...]] = ("hessian_step*.npz", "hessian_step*.png")

    def __init__(
        self,
        out_dir: Path | str,
        config: HessianConfig | None = None,
        *,
        batch: Any = None,
        loss_fn: LossFn = training_loss,
        figures: bool = True,
        **analysis: Any,
    ) -> None:
        """``config`` says when and how much (``diagnostics.hessian``); ``analysis`` goes to
        :func:`hessian_analysis` as is (``tol``, ``n_trace_samples``, ``n_lanczos``, ...)."""
        config = config or HessianConfig()
        self.out_dir = Path(out_dir)
        self.figures = figures
        self.fractions = list(config.steps)
        self.kwargs: dict[str, Any] = dict(top_k=config.top_k, iters=config.iters) | analysis
        if not config.density:
            self.kwargs["n_vectors"] = 0
        self.loss_fn = loss_fn
        self.batch = batch
        self.targets: list[int] = []
        self.results: dict[int, dict[str, float]] = {}
        self.loss_name = ""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            check_precision(trainer.precision)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ConfigError(
                "diagnostics.hessian.steps are fractions of the run; set train.max_steps"
            )
        self.targets = resolve_steps(self.fractions, int(total))
        if trainer.global_step in self.targets:
            self._measure(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any
    ) -> None:
        if trainer.global_step in self.targets:
            self._measure(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Training stopped before a requested step: measure the final weights once.
        if any(t > trainer.global_step for t in self.targets):
            self._measure(trainer, pl_module)

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        if step in self.results or not trainer.is_global_zero:
            return
        if self.batch is None:
            self.batch = _first_val_batch(trainer)
        batch = move_to(self.batch, pl_module.device)
        start = time.perf_counter()
        with exclude_from_throughput():  # at the last step: not that step's training time
            result = hessian_analysis(pl_module, self.loss_fn, batch, **self.kwargs)
        self.loss_name = loss_name(pl_module, self.loss_fn)
        result.extra["hessian/seconds"] = time.perf_counter() - start
        metrics = result.scalars()
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        self.results[step] = metrics
        self._save(result, step)

    def _save(self, result: HessianResult, step: int) -> None:
        out = self.out_dir / "diagnostics"
        save_npz(
            out / f"hessian_step{step}.npz",
            step=step,
            top_k=np.asarray(result.top_k),
            lambda_min=result.lambda_min,
            trace=result.trace,
            trace_stderr=result.trace_stderr,
            condition=result.condition,
            n_params=result.n_params,
            loss=result.loss,
            loss_fn=np.array(self.loss_name),
            compute_dtype=np.array(result.dtype),
            lanczos_steps=result.lanczos_steps,
            converged=result.converged,
            grid=result.grid,
            density=result.density,
            ritz_nodes=result.ritz_nodes,
            ritz_weights=result.ritz_weights,
        )
        if not self.figures:
            return
        try:
            draw_figures(out / f"hessian_step{step}.npz", "hessian_step*.npz")
        except Exception as e:  # a figure must never fail training
            rank_zero_warn(f"hessian: could not draw the density figure: {e}")

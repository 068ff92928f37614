"""What attention learned: every layer's and head's map on fixed validation examples,
at init and at the end of training.

:class:`AttentionMapsCallback` takes the first ``attention_maps_examples``
examples of the first validation loader (the training length), runs one
eval-mode forward with the attention layers recorded at step 0 (before any update) and at
the end, and writes ``diagnostics/attention_maps.npz`` (format:
:mod:`bench.diagnostics.attention.plot`) with ``attention_init.png`` and
``attention_end.png`` (example 0, with ``diagnostics.figures``) next to it; W&B gets
both images. Cheap: two
forwards of a few examples per run. Off for models above
``attention_maps_max_params`` parameters, and sequences are cropped to their
first ``attention_maps_max_len`` positions, so the file stays small.

A run resumed from a checkpoint keeps the maps recorded before it stopped.
What a trained model should show: the anti-diagonal for reversal, the diagonal
(shifted by the prompt) for copying, an induction pattern on associative recall.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import Tensor

from bench.config import DiagnosticsConfig
from bench.diagnostics.attention.plot import FILE, AttentionMaps
from bench.diagnostics.attention.stats import record_maps
from bench.diagnostics.base import Diagnostic, datamodule_of, model_of
from bench.diagnostics.batches import slice_batch
from bench.diagnostics.run_figures import draw_figures
from bench.diagnostics.throughput.stopwatch import exclude_from_throughput
from bench.io import save_npz

log = logging.getLogger("bench.diagnostics")

Batch = dict[str, Tensor]


class AttentionMapsCallback(Diagnostic):
    """Records attention maps at init and at the end (see the module docstring).

    Runs: ``on_train_start`` (the maps at init), ``on_train_end`` (the maps at
    the end; writes the npz and figures on global rank zero). Logs the figures
    to W&B as ``attention/init`` and ``attention/end``.
    """

    name: ClassVar[str] = "attention_maps"
    metrics: ClassVar[str] = "attention/"
    files: ClassVar[tuple[str, ...]] = (FILE, "attention_init.png", "attention_end.png")

    def __init__(self, cfg: DiagnosticsConfig, run_dir: str | Path) -> None:
        super().__init__()
        self.cfg = cfg
        self.out = Path(run_dir) / "diagnostics"
        self.steps: list[int] = []
        self.records: list[dict[str, Any]] = []
        self._batch: Batch | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        n_params = sum(p.numel() for p in model_of(pl_module).parameters())
        if n_params > self.cfg.attention_maps_max_params:
            log.info(
                "attention maps off: %d parameters > diagnostics.attention_maps_max_params=%d",
                n_params,
                self.cfg.attention_maps_max_params,
            )
            return
        # The random state is left as it was: a resumed run must draw the same dropout
        # masks as an uninterrupted one (creating a loader iterator draws a seed).
        with torch.random.fork_rng(devices=[]):
            dm = datamodule_of(trainer)
            assert dm is not None, "attention maps read the first validation batch"
            loader = dm.val_dataloader()[0]
            batch = next(iter(loader))
            self._batch = {
                k: v.to(pl_module.device)
                for k, v in slice_batch(batch, self.cfg.attention_maps_examples).items()
            }
            self._resume()
            if trainer.global_step == 0:
                self._record(trainer, pl_module, 0)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._batch is None or not trainer.is_global_zero:
            return
        step = trainer.global_step
        if not self.steps or self.steps[-1] != step:
            self._record(trainer, pl_module, step)
        with exclude_from_throughput():
            self.save(trainer)

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        model = model_of(pl_module)
        if self._batch is None:
            return
        was_training = model.training
        model.eval()  # no dropout in the maps, and no random draws
        try:
            with exclude_from_throughput(), trainer.precision_plugin.forward_context():
                rec = record_maps(model, self._batch, self.cfg.attention_maps_max_len)
        finally:
            model.train(was_training)
        if rec["layers"]:
            self.steps.append(step)
            self.records.append(rec)

    def _resume(self) -> None:
        """Keep what a run stopped before its end recorded (the init maps)."""
        path = self.out / FILE
        if not path.is_file() or self.records:
            return
        old = AttentionMaps.load(path)
        for i, step in enumerate(old.steps):
            self.steps.append(step)
            self.records.append(
                {
                    "layers": old.layers,
                    "maps": [m[i] for m in old.maps],
                    "queries": old.queries,
                    "keys": old.keys,
                    "query_tokens": old.query_tokens,
                    "key_tokens": old.key_tokens,
                }
            )

    def maps(self) -> AttentionMaps:
        first = self.records[0]
        return AttentionMaps(
            steps=list(self.steps),
            layers=list(first["layers"]),
            maps=[
                np.stack([r["maps"][j] for r in self.records]) for j in range(len(first["layers"]))
            ],
            queries=list(first["queries"]),
            keys=list(first["keys"]),
            query_tokens=list(first["query_tokens"]),
            key_tokens=list(first["key_tokens"]),
        )

    def save(self, trainer: L.Trainer | None = None) -> list[Path]:
        """Write the npz and (``diagnostics.figures``) the init / end figures; W&B gets
        the figures."""
        if not self.records:
            return []
        self.out.mkdir(parents=True, exist_ok=True)
        written = [save_npz(self.out / FILE, **self.maps().arrays())]
        if self.cfg.figures:  # no init figure when there are no init maps (a resumed run)
            written += draw_figures(written[0], FILE)
        if trainer is None:
            return written
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                for path in written[1:]:
                    key = "attention/" + path.stem.removeprefix("attention_")
                    logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
        return written

"""The step of a run's last validation and its best validation values, kept across a resume."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback


class TrackValidation(Callback):
    """Remembers the step of the last validation and the best val/loss seen."""

    def __init__(self) -> None:
        self.last_step = -1
        self.best: dict[str, float] = {}

    def state_dict(self) -> dict[str, Any]:
        """Saved in every checkpoint: a resumed run keeps the best values seen before."""
        return {"last_step": self.last_step, "best": dict(self.best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_step = int(state.get("last_step", -1))
        self.best = {k: float(v) for k, v in state.get("best", {}).items()}

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.last_step = trainer.global_step
        m = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        loss = m.get("val/loss")
        if (
            loss is not None
            and math.isfinite(loss)
            and loss < self.best.get("best/val/loss", math.inf)
        ):
            self.best = {"best/val/loss": loss, "best/step": float(trainer.global_step)}
            self.best.update({f"best/{k}": v for k, v in m.items() if k != "val/loss"})

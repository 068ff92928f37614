"""Optimisation and the Trainer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.config.base import Strict

Schedule = Literal["cosine", "linear", "constant"]
Precision = Literal["auto", "32-true", "bf16-mixed", "16-mixed"]


class TrainConfig(Strict):
    """Optimisation and the Trainer."""

    max_steps: int = Field(default=300, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    warmup_steps: int = Field(default=30, ge=0)
    schedule: Schedule = "cosine"
    weight_decay: float = Field(default=0.1, ge=0)
    decay_norms_and_embeddings: bool = False
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.98, ge=0, lt=1)
    grad_clip: float | None = Field(default=1.0, gt=0)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    precision: Precision = "auto"  # auto: bf16-mixed on GPU, 32-true on CPU
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int = Field(default=1, ge=1)
    val_every: int = Field(default=100, ge=1)  # steps between validations
    log_every: int = Field(default=10, ge=1)
    checkpoint_every: int | None = Field(default=None, ge=1)  # None: at each validation
    threads: int | None = Field(default=None, ge=1)  # torch intra-op threads
    seed: int = 0
    deterministic: bool = True
    # torch.compile the model (nn.Module.compile: in place, same state_dict keys); opt-in
    compile: bool = False
    progress_bar: bool | None = None  # None: only when stderr is a terminal

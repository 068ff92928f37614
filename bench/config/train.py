"""Optimisation and the Trainer."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.config.base import Strict

Schedule = Literal["cosine", "linear", "constant"]
Precision = Literal["auto", "32-true", "bf16-mixed", "16-mixed"]
Parameterization = Literal["standard", "mup"]


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
    z_loss: float = Field(
        default=0.0,
        ge=0,
        description=(
            "z-loss coefficient (Chowdhery et al. 2022, PaLM, Section 5; Wortsman et al. 2023): "
            "adds z_loss * mean log(Z)^2 of the output logits to the training loss, logged as "
            "train/z_loss; 0 is off, PaLM's is 1e-4"
        ),
    )
    parameterization: Parameterization = Field(
        default="standard",
        description=(
            "standard: the init scheme, 1/sqrt(d_head) attention, one LR; mup: maximal update "
            "parameterization for Adam (Yang et al. 2022, Tensor Programs V, Table 3): hidden "
            "matrices' LR x base/width, readout x base/width, attention x sqrt(base d_head)/d_head "
            "(bench.model.parameterization, docs/mup.md)"
        ),
    )
    mup_base_width: int = Field(
        default=32,
        ge=1,
        description=(
            "mup: the d_model at which mup equals standard (mup's base shapes; 32, the "
            "smallest width of the size ladder, so an LR tuned there transfers up)"
        ),
    )
    # auto: bf16-mixed on a GPU with bf16, and on a CPU where bf16 measured >= 1.2x fp32 at the
    # run's matmul shapes; else 32-true (bench.training.precision)
    precision: Precision = "auto"
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: int = Field(default=1, ge=1)  # DDP ranks per node
    nodes: int = Field(default=1, ge=1)  # nodes (DDP over Slurm tasks: bench.training.cluster)
    val_every: int = Field(default=100, ge=1)  # steps between validations
    log_every: int = Field(default=10, ge=1)
    checkpoint_every: int | None = Field(default=None, ge=1)  # None: at each validation
    threads: int | None = Field(default=None, ge=1)  # torch intra-op threads
    seed: int = 0
    deterministic: bool = True
    # torch.compile the model (nn.Module.compile: in place, same state_dict keys); opt-in
    compile: bool = False
    progress_bar: bool | None = None  # None: only when stderr is a terminal

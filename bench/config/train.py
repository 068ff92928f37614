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

    max_steps: int = Field(default=300, ge=1, description="training steps")
    lr: float = Field(default=3e-3, gt=0, description="peak AdamW learning rate")
    min_lr_ratio: float = Field(
        default=0.1, ge=0, le=1, description="the schedule decays to lr x min_lr_ratio"
    )
    warmup_steps: int = Field(default=30, ge=0, description="linear warmup from 0 to lr")
    schedule: Schedule = Field(default="cosine", description="decay after the warmup")
    weight_decay: float = Field(default=0.1, ge=0, description="AdamW weight decay")
    decay_norms_and_embeddings: bool = Field(
        default=False, description="decay norms, biases and embeddings too (default: exempt)"
    )
    beta1: float = Field(default=0.9, ge=0, lt=1, description="AdamW beta1")
    beta2: float = Field(default=0.98, ge=0, lt=1, description="AdamW beta2")
    grad_clip: float | None = Field(
        default=1.0, gt=0, description="gradient norm clipping (None: off)"
    )
    label_smoothing: float = Field(
        default=0.0, ge=0, lt=1, description="label smoothing of the training loss"
    )
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
    precision: Precision = Field(
        default="auto",
        description="auto: bf16-mixed on a GPU with bf16, and on a CPU where bf16 measured "
        ">= 1.2x fp32 at the run's matmul shapes; else 32-true (bench.training.precision)",
    )
    accelerator: Literal["auto", "cpu", "gpu"] = Field(
        default="auto", description="auto: a GPU when one is visible"
    )
    devices: int = Field(
        default=1, ge=1, description="DDP ranks per node (a sweep worker's GPU group)"
    )
    nodes: int = Field(
        default=1, ge=1, description="nodes (DDP over Slurm tasks: bench.training.cluster)"
    )
    val_every: int = Field(default=100, ge=1, description="steps between validations")
    log_every: int = Field(default=10, ge=1, description="steps between logged training metrics")
    checkpoint_every: int | None = Field(
        default=None, ge=1, description="steps between checkpoints (None: at each validation)"
    )
    threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads (None: torch's choice)"
    )
    seed: int = Field(default=0, description="seed of the init, dropout and batch order")
    deterministic: bool = Field(default=True, description="deterministic torch algorithms")
    compile: bool = Field(
        default=False,
        description="torch.compile the model (nn.Module.compile: in place, same state_dict keys)",
    )
    progress_bar: bool | None = Field(
        default=None, description="None: only when stderr is a terminal"
    )

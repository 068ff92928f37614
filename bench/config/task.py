"""What to learn: the task and its data."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.config.base import Strict

TaskName = Literal["copy", "reverse", "sort", "recall", "modadd", "scan", "text"]
# What each task asks (bench variants lists them); the classes are in bench/tasks/.
TASKS_DESCRIBED: dict[str, str] = {
    "copy": "repeat the prompt (probes: seq_len symbols of n_symbols)",
    "reverse": "the prompt backwards",
    "sort": "the prompt's symbols in order",
    "recall": "associative recall: k1 v1 ... kn vn q -> the value of key q",
    "modadd": "running sums mod task.modulus of seq_len terms",
    "scan": "SCAN commands to actions, split by action-sequence length (encoder-decoder too)",
    "text": "byte-level language modelling (the stdlib's sources, or task.paths / task.hf_dataset)",
}


class TaskConfig(Strict):
    """What to learn. Data is generated (or read locally) from ``seed``."""

    name: TaskName = Field(default="copy", description="the task (bench variants lists them)")
    seq_len: int = Field(
        default=16,
        ge=1,
        description="problem size (probes, scan) or context length (text) in training",
    )
    eval_scales: list[int] = Field(
        default_factory=lambda: [1, 2, 4],
        description="validation lengths as multiples of seq_len: increasing, starting at 1",
    )
    n_symbols: int = Field(default=16, ge=2, description="alphabet of the synthetic probes")
    modulus: int = Field(default=23, ge=2, description="modadd: the modulus of the running sums")
    n_train: int = Field(
        default=4096, ge=1, description="training examples (probes, scan) or windows (text)"
    )
    n_val: int = Field(
        default=256, ge=1, description="validation examples per eval length; text: spans"
    )
    batch_size: int = Field(default=32, ge=1, description="examples a training step")
    seed: int = Field(default=0, description="seed of the generated data and its split")
    paths: list[str] = Field(
        default_factory=list, description="text: files and folders to read; [] = the stdlib"
    )
    hf_dataset: str | None = Field(
        default=None,
        description="text: a Hugging Face dataset (name or name:config) already in the local cache",
    )
    max_bytes: int = Field(default=2_000_000, ge=1, description="text: cap on the bytes read")
    sliding_eval: bool = Field(
        default=False,
        description="text: also score each validation span's last seq_len bytes with windows "
        "of every eval length ending there (val/loss_sw@L; bench/tasks/text.py)",
    )
    num_workers: int = Field(default=0, ge=0, description="DataLoader worker processes")

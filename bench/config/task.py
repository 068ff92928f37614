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

    name: TaskName = "copy"
    seq_len: int = Field(default=16, ge=1)  # problem size / context length at training time
    eval_scales: list[int] = Field(default_factory=lambda: [1, 2, 4])  # x seq_len
    n_symbols: int = Field(default=16, ge=2)  # alphabet of the synthetic probes
    modulus: int = Field(default=23, ge=2)  # modadd
    n_train: int = Field(default=4096, ge=1)  # examples (probes, scan) or windows (text)
    n_val: int = Field(default=256, ge=1)  # per eval length; text: spans (tasks/text.py)
    batch_size: int = Field(default=32, ge=1)
    seed: int = 0
    paths: list[str] = Field(default_factory=list)  # text: files/folders; [] = stdlib
    hf_dataset: str | None = None  # text: a cached Hugging Face dataset name
    max_bytes: int = Field(default=2_000_000, ge=1)  # text: cap on bytes read
    # text: also score the last seq_len bytes of each validation span with windows of
    # every eval length ending at the span's end (val/loss_sw@L; bench/tasks/text.py)
    sliding_eval: bool = False
    num_workers: int = Field(default=0, ge=0)

"""The precision a run trains in: ``train.precision`` resolved, and why.

``auto`` picks bf16 autocast (``bf16-mixed``: float32 weights and optimizer
state, bf16 matmuls; Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep
Learning Training") where it is faster, and float32 (``32-true``) elsewhere:

- on a GPU: ``bf16-mixed`` when it supports bf16 (``torch.cuda.is_bf16_supported``,
  Ampere and later), else ``32-true``;
- on a CPU: ``bf16-mixed`` only when bf16 autocast measured at least
  :data:`BF16_MIN_SPEEDUP` times faster than float32 at *this run's* matmul
  shapes (:mod:`bench.training.matmul_speed`, measured once per device,
  threads and shapes, cached in the user cache directory), else ``32-true``.
  Not a list of CPU models, and not the square-matrix peak ratio: on a CPU with
  ``avx512_bf16`` that ratio is about 2 while this suite's small models train
  slower in bf16.

The choice and its reason go into the run's ``manifest.json`` (``precision``)
and the header ``bench train`` prints when it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import torch

from bench.config import RunConfig
from bench.config.train import Precision
from bench.run import Run
from bench.training.matmul_speed import Workload, cached_speedup, workload_of

BF16_MIN_SPEEDUP = 1.2  # below this, bf16's rounding is not worth its speed
CPU_BUILD_PARAMS = 2_000_000  # run_workload builds models up to this size on the CPU (8 MB)

Speedup = Callable[[RunConfig], tuple[float, bool]]  # cfg -> (bf16 speedup, from cache)


@dataclass(frozen=True)
class PrecisionChoice:
    """A Lightning precision string and the sentence that says why it was chosen."""

    precision: str
    reason: str
    bf16_speedup: float | None = None  # measured at the run's shapes (CPU auto only)

    def record(self) -> dict[str, Any]:
        """What ``manifest.json`` holds under ``precision``."""
        out: dict[str, Any] = {"value": self.precision, "reason": self.reason}
        if self.bf16_speedup is not None:
            out["bf16_speedup"] = self.bf16_speedup
        return out


def run_workload(cfg: RunConfig) -> Workload:
    """The matmul shapes of one training step of ``cfg`` (its vocabulary resolved).

    Only the modules' shapes are read. A model of up to :data:`CPU_BUILD_PARAMS`
    parameters is built on the CPU (milliseconds; the global RNG it draws from is
    restored), a larger one on the ``meta`` device (no memory; the first ``meta``
    build in a process costs about 1.3 s of CPU, PyTorch's meta kernels loading).
    """
    from bench.model import build_model
    from bench.training.resources import count_params

    if count_params(cfg) <= CPU_BUILD_PARAMS:
        with torch.random.fork_rng(devices=[]):
            model = build_model(cfg.model)
    else:
        with torch.device("meta"):
            model = build_model(cfg.model)
    return workload_of(model, cfg.task.batch_size, cfg.task.seq_len)


def run_speedup(cfg: RunConfig) -> tuple[float, bool]:
    """bf16-autocast speedup over fp32 at ``cfg``'s matmul shapes on the CPU (cached)."""
    return cached_speedup(run_workload(cfg), "cpu", threads=cfg.train.threads)


def _gpu_supports_bf16() -> bool:
    return bool(torch.cuda.is_bf16_supported())


def recorded_precision(run_dir: Path) -> str | None:
    """The precision a run's ``manifest.json`` says it trained in, None if it says none."""
    recorded = Run.load(run_dir).manifest.get("precision")
    value = recorded.get("value") if isinstance(recorded, dict) else None
    return value if value in get_args(Precision) and value != "auto" else None


def choose_precision(
    cfg: RunConfig,
    accelerator: str,
    *,
    resume: Path | None = None,
    gpu_supports_bf16: Callable[[], bool] = _gpu_supports_bf16,
    speedup: Speedup = run_speedup,
) -> PrecisionChoice:
    """``train.precision`` as set, or what ``auto`` picks on ``accelerator`` (see the module).

    A resumed run (``resume``: its directory) keeps the precision ``auto`` chose
    when it started, so that a measurement taken again cannot switch it mid-run.
    """
    set_to = cfg.train.precision
    if set_to != "auto":
        return PrecisionChoice(set_to, f"train.precision={set_to} (set)")
    earlier = recorded_precision(resume) if resume is not None else None
    if earlier is not None:
        return PrecisionChoice(earlier, f"auto: {earlier}, as chosen when the run started")
    if accelerator == "gpu":
        if gpu_supports_bf16():
            return PrecisionChoice("bf16-mixed", "auto: this GPU supports bf16")
        return PrecisionChoice("32-true", "auto: this GPU has no bf16 (is_bf16_supported() False)")
    try:
        value, cached = speedup(cfg)
    except RuntimeError as e:  # e.g. no bf16 kernels for this CPU in this torch build
        return PrecisionChoice("32-true", f"auto on CPU: bf16 could not be measured ({e}): fp32")
    where = "cached" if cached else "measured now"
    measured = f"bf16 autocast {value:.2f}x fp32 at this run's matmul shapes ({where})"
    if value >= BF16_MIN_SPEEDUP:
        return PrecisionChoice("bf16-mixed", f"auto on CPU: {measured}", value)
    return PrecisionChoice("32-true", f"auto on CPU: {measured}, < {BF16_MIN_SPEEDUP}x", value)

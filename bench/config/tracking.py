"""Where a run's records go: the run directory and W&B."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.config.base import Strict

TrackingMode = Literal["offline", "online", "disabled"]


class TrackingConfig(Strict):
    """Where a run's records go: the run directory and W&B."""

    mode: TrackingMode = "offline"
    project: str = "bench"
    entity: str | None = None
    group: str | None = None
    job_type: str = "train"
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    out_dir: str = "runs"  # parent of run directories
    run_dir: str | None = None  # exact run directory (sweeps set this)
    meta: dict[str, str | int | float | bool] = Field(default_factory=dict)  # e.g. cell, trial

"""Where a run's records go: the run directory and W&B."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from bench.config.base import Strict

TrackingMode = Literal["offline", "online", "disabled"]


class TrackingConfig(Strict):
    """Where a run's records go: the run directory and W&B."""

    mode: TrackingMode = Field(default="offline", description="W&B: offline files, online, or off")
    project: str = Field(default="bench", description="W&B project")
    entity: str | None = Field(default=None, description="W&B entity (user or team)")
    group: str | None = Field(default=None, description="W&B group (sweeps set it)")
    job_type: str = Field(default="train", description="W&B job type")
    name: str | None = Field(default=None, description="W&B run name")
    tags: list[str] = Field(default_factory=list, description="W&B tags")
    out_dir: str = Field(default="runs", description="parent of run directories")
    run_dir: str | None = Field(default=None, description="exact run directory (sweeps set it)")
    meta: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="extra values recorded with the run (sweeps: cell, trial)"
    )

"""Switches and intervals of the measurements taken during a run (bench/diagnostics)."""

from __future__ import annotations

from pydantic import Field

from bench.config.base import Strict
from bench.config.errors import ConfigError


class DiagnosticsConfig(Strict):
    """Switches and intervals for the measurements in bench/diagnostics."""

    gradients: bool = True
    gradients_every: int = Field(default=25, ge=1)
    noise_scale: bool = True
    attention_entropy: bool = True
    hessian: bool = False
    hessian_steps: list[float] = Field(default_factory=lambda: [0.0, 0.5, 1.0])  # fractions
    hessian_top_k: int = Field(default=3, ge=1)
    hessian_iters: int = Field(default=20, ge=1)
    landscape: bool = False
    landscape_resolution: int = Field(default=11, ge=3)
    landscape_every: int | None = Field(
        default=None, ge=1
    )  # trajectory snapshots; None: ~40 per run
    landscape_batches: int = Field(default=2, ge=1)  # evaluation batches per grid point
    throughput: bool = True
    peak_flops: float | None = Field(default=None, gt=0)  # override the peak used for MFU
    # attention maps of fixed validation examples at init and at the end (attention_maps.py)
    attention_maps: bool = True
    attention_maps_examples: int = Field(
        default=4, ge=1
    )  # examples recorded (bench attention --example)
    attention_maps_max_len: int = Field(
        default=64, ge=1
    )  # positions kept per axis (longer: cropped)
    attention_maps_max_params: int = Field(default=20_000_000, ge=0)  # larger models: no maps
    # each diagnostic's PNG figures at the end of the run (bench/diagnostics/run_figures.py);
    # false: the same data files only, figures drawn later by `bench figures RUN_DIR`
    figures: bool = True


def check_landscape_options(resolution: int | None, n_batches: int | None) -> None:
    """``bench landscape``'s overrides, within the bounds of the fields above (ConfigError)."""
    if resolution is not None and resolution < 3:
        raise ConfigError(f"--resolution={resolution}: allowed: an integer >= 3")
    if n_batches is not None and n_batches < 1:
        raise ConfigError(f"--batches={n_batches}: allowed: an integer >= 1")

"""Switches and intervals of the measurements taken during a run (bench/diagnostics).

The two costly measurements, the Hessian spectrum and the loss landscape, are
sections of their own (``diagnostics.hessian.top_k``), each passed whole to its
diagnostic; ``diagnostics.hessian=true`` is short for
``diagnostics.hessian.enabled=true``. Config files written when these were flat
keys (``hessian_top_k``) still load: :func:`canonical_key` renames them.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from bench.config.base import Strict
from bench.config.errors import ConfigError


class HessianConfig(Strict):
    """The Hessian's extreme eigenvalues, trace and spectral density at fractions of a run
    (Ghorbani, Krishnan, Xiao 2019; :mod:`bench.diagnostics.hessian`)."""

    enabled: bool = Field(default=False, description="measure the Hessian")
    steps: list[float] = Field(
        default_factory=lambda: [0.0, 0.5, 1.0], description="when: fractions of the run"
    )
    top_k: int = Field(default=3, ge=1, description="extreme eigenvalues")
    iters: int = Field(default=20, ge=1, description="power iterations per eigenvalue")
    # 3 x 40 Hessian-vector products a measurement, 60% of its cost; only the per-run
    # figure draws the density (not the report)
    density: bool = Field(
        default=True,
        description="the spectral density by stochastic Lanczos quadrature; off: the npz "
        "holds λ_max, λ_min and the trace only",
    )


class LandscapeConfig(Strict):
    """Loss along the init-to-final line and over two planes around the final weights
    (Li et al. 2018, filter-normalised directions; :mod:`bench.diagnostics.landscape`)."""

    enabled: bool = Field(default=False, description="measure the loss landscape at the end")
    resolution: int = Field(default=11, ge=3, description="grid points a side (made odd)")
    every: int | None = Field(
        default=None, ge=1, description="steps between trajectory snapshots (None: ~40 a run)"
    )
    batches: int = Field(default=2, ge=1, description="evaluation batches per grid point")
    span: float = Field(default=1.0, gt=0, description="the plane covers [-span, span]^2")
    radius: float = Field(default=0.5, gt=0, description="sharpness: the max rise within this")
    threshold: float = Field(
        default=0.1, gt=0, description="basin width: the loss rise that bounds the basin"
    )
    interpolation_points: int = Field(
        default=21, ge=2, description="points on the init-to-final line"
    )


# Flat keys of earlier config files, and the short switch, -> their nested key.
_RENAMED = {
    "hessian": "hessian.enabled",
    "hessian_steps": "hessian.steps",
    "hessian_top_k": "hessian.top_k",
    "hessian_iters": "hessian.iters",
    "landscape": "landscape.enabled",
    "landscape_resolution": "landscape.resolution",
    "landscape_every": "landscape.every",
    "landscape_batches": "landscape.batches",
}


def canonical_key(key: str) -> str:
    """``diagnostics.hessian_top_k`` -> ``diagnostics.hessian.top_k`` (other keys unchanged).

    Called on every dotted key before it is set, so a file's ``hessian: true`` and an
    override ``diagnostics.hessian.top_k=5`` layer instead of replacing each other.
    """
    section, _, name = key.partition(".")
    if section == "diagnostics" and name in _RENAMED:
        return f"diagnostics.{_RENAMED[name]}"
    return key


class DiagnosticsConfig(Strict):
    """Switches and intervals for the measurements in bench/diagnostics."""

    gradients: bool = Field(default=True, description="per-block gradient norms and update ratios")
    gradients_every: int = Field(
        default=25, ge=1, description="steps between gradient measurements"
    )
    noise_scale: bool = Field(
        default=True, description="the gradient noise scale (McCandlish et al. 2018)"
    )
    attention_entropy: bool = Field(default=True, description="attention entropy per layer")
    hessian: HessianConfig = Field(
        default_factory=HessianConfig, description="the Hessian spectrum (true: enabled)"
    )
    landscape: LandscapeConfig = Field(
        default_factory=LandscapeConfig, description="the loss landscape (true: enabled)"
    )
    throughput: bool = Field(default=True, description="tokens/s, FLOPs, MFU and peak memory")
    peak_flops: float | None = Field(
        default=None, gt=0, description="the peak FLOP/s used for MFU (None: this device's)"
    )
    attention_maps: bool = Field(
        default=True,
        description="attention maps of fixed validation examples at init and at the end",
    )
    attention_maps_examples: int = Field(
        default=4, ge=1, description="examples recorded (bench attention --example)"
    )
    attention_maps_max_len: int = Field(
        default=64, ge=1, description="positions kept per axis (longer: cropped)"
    )
    attention_maps_max_params: int = Field(
        default=20_000_000, ge=0, description="larger models record no maps"
    )
    figures: bool = Field(
        default=True,
        description="PNG figures at the end of the run; false: data files only "
        "(bench figures RUN_DIR draws them later)",
    )

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_keys(cls, data: Any) -> Any:
        """A section written with the flat keys (or ``hessian: true``) becomes nested."""
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key in ("hessian", "landscape") and not isinstance(value, bool):
                if isinstance(value, dict) and isinstance(out.get(key), dict):
                    out[key].update(value)
                else:
                    out[key] = dict(value) if isinstance(value, dict) else value
                continue
            section, _, field = (_RENAMED.get(key) or key).partition(".")
            if not field:
                out[key] = value
            elif isinstance(out.setdefault(section, {}), dict):
                out[section][field] = value
            else:
                return data  # a section given twice, whole and flat: validation names it
        return out


def check_landscape_options(resolution: int | None, n_batches: int | None) -> None:
    """``bench landscape``'s overrides, within the bounds of the fields above (ConfigError)."""
    if resolution is not None and resolution < 3:
        raise ConfigError(f"--resolution={resolution}: allowed: an integer >= 3")
    if n_batches is not None and n_batches < 1:
        raise ConfigError(f"--batches={n_batches}: allowed: an integer >= 1")

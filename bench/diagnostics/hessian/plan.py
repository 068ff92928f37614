"""When a run's Hessian is measured (fractions of the run as steps) and at which
Trainer precisions it can be (second-order products need float32 weights)."""

from __future__ import annotations

from collections.abc import Sequence

from bench.config import ConfigError

SUPPORTED_PRECISIONS = ("32-true", "bf16-mixed", "64-true")


def check_precision(precision: str) -> None:
    """Raise ConfigError unless the Hessian can be measured at this Trainer precision.

    Supported: 32-true and 64-true, and bf16-mixed (float32 weights; autocast is
    disabled during the measurement). Half-precision weights (16-true, bf16-true)
    and fp16 AMP (16-mixed, whose loss scaling and fp16 range make second-order
    products unreliable) are refused.
    """
    if str(precision) not in SUPPORTED_PRECISIONS:
        raise ConfigError(
            f"diagnostics.hessian: precision {precision!r} is not supported; "
            f"allowed: {', '.join(SUPPORTED_PRECISIONS)}"
        )


def resolve_steps(fractions: Sequence[float], total_steps: int) -> list[int]:
    """Fractions of the run (0 = before any update, 1 = the end) as sorted step numbers."""
    return sorted({round(f * total_steps) for f in fractions})

"""The gradient noise scale B_simple (McCandlish et al. 2018, "An Empirical Model of
Large-Batch Training"): the batch size above which larger batches stop paying off.
"""

from __future__ import annotations

import math


def noise_scale_estimates(
    sq_small: float, sq_big: float, b_small: int, b_big: int
) -> tuple[float, float]:
    """Unbiased ``(|G|², tr(Σ))`` from squared gradient norms at two batch sizes.

    McCandlish et al. 2018, Appendix A.1: with ``E|G_B|² = |G|² + tr(Σ)/B``,
    ``|G|² ≈ (B_big|G_big|² - B_small|G_small|²) / (B_big - B_small)`` and
    ``tr(Σ) ≈ (|G_small|² - |G_big|²) / (1/B_small - 1/B_big)``.
    """
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got {b_small}, {b_big}")
    g2 = (b_big * sq_big - b_small * sq_small) / (b_big - b_small)
    trace = (sq_small - sq_big) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


class NoiseScale:
    """Exponential moving averages of both estimates; ``value`` = B_simple = tr(Σ)/|G|².

    Each estimate is noisy (and can be negative); the paper averages them before
    taking the ratio. Averages are bias-corrected like Adam's moments.
    """

    def __init__(self, beta: float = 0.9) -> None:
        self.beta, self.n = beta, 0
        self._g2 = self._trace = 0.0

    def update(self, sq_small: float, sq_big: float, b_small: int, b_big: int) -> float:
        g2, trace = noise_scale_estimates(sq_small, sq_big, b_small, b_big)
        self.n += 1
        self._g2 = self.beta * self._g2 + (1 - self.beta) * g2
        self._trace = self.beta * self._trace + (1 - self.beta) * trace
        return self.value

    @property
    def grad_sq(self) -> float:
        return self._g2 / (1 - self.beta**self.n) if self.n else math.nan

    @property
    def trace(self) -> float:
        return self._trace / (1 - self.beta**self.n) if self.n else math.nan

    @property
    def value(self) -> float:
        g2 = self.grad_sq
        return self.trace / g2 if self.n and g2 > 0 else math.nan

"""The median of a few timings and a distribution-free confidence interval for it.

The interval is the order-statistic one (Hahn & Meeker 1991, "Statistical
Intervals", sec. 5.2; Conover 1999, "Practical Nonparametric Statistics",
sec. 3.2): for ``n`` independent draws from any continuous distribution the
number of draws below the true median is Binomial(n, 1/2), so the ``j``-th
smallest and ``j``-th largest values bracket the median with probability
``1 - 2 P(Bin(n, 1/2) <= j - 1)``. Timings on a shared machine are skewed by
interference (a slow round now and then), which is why a distribution-free
interval is used rather than a normal one.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MIN_ROUNDS = 5  # fewer: the median's interval is [min, max] at < 94% coverage


@dataclass(frozen=True)
class MedianInterval:
    """``median`` with ``[low, high]`` covering the true median with probability ``coverage``."""

    median: float
    low: float
    high: float
    coverage: float
    n: int

    def overlaps(self, other: MedianInterval) -> bool:
        """Whether the two intervals share a value (the medians are then not told apart)."""
        return self.low <= other.high and other.low <= self.high


def order_statistic_coverage(n: int, j: int) -> float:
    """Probability that the ``j``-th smallest and ``j``-th largest of ``n`` draws bracket the median."""
    from scipy.stats import binom  # here: bench throughput checks MIN_ROUNDS without scipy

    return float(1.0 - 2.0 * binom.cdf(j - 1, n, 0.5))


def median_interval(values: Sequence[float], level: float = 0.95) -> MedianInterval:
    """The median of ``values`` and the narrowest order-statistic interval of coverage ``>= level``.

    When even ``[min, max]`` covers less than ``level`` (fewer than 6 values for
    95%), that interval is returned with its smaller coverage.
    """
    if not values:
        raise ValueError("median_interval of no values")
    xs = sorted(values)
    n = len(xs)
    j = 1
    while j + 1 <= n // 2 and order_statistic_coverage(n, j + 1) >= level:
        j += 1
    return MedianInterval(
        statistics.median(xs), xs[j - 1], xs[n - j], order_statistic_coverage(n, j), n
    )

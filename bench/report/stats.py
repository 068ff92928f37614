"""Statistics the report may claim: means with bootstrap CIs, effect sizes, tests.

- A cell's quality: the mean over its seed runs with a 95% percentile-bootstrap
  CI of the mean (no CI with fewer than two seeds).
- A comparison of two groups: the difference of means, its 95% bootstrap CI
  (each group resampled on its own), Hedges' g (the difference in pooled
  standard deviations, small-sample corrected) and a two-sided Welch t-test.
- Many comparisons: Holm–Bonferroni step-down adjusted p-values (controls the
  family-wise error rate; no independence assumption).
- Verdicts are words: "significant", "not significant", "not enough seeds"
  (fewer than two runs in a group) or "no variation" (every run identical).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
N_BOOT = 4000
MIN_SEEDS = 2

NOT_ENOUGH = "not enough seeds"
NO_VARIATION = "no variation"
SIGNIFICANT = "significant"
NOT_SIGNIFICANT = "not significant"


@dataclass(frozen=True)
class Estimate:
    """Mean of a group with its 95% CI (None when it cannot be formed)."""

    n: int
    mean: float | None
    lo: float | None = None
    hi: float | None = None
    sd: float | None = None


@dataclass(frozen=True)
class Comparison:
    """Group ``a`` against group ``b`` on one metric (difference = mean a - mean b)."""

    axis: str
    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float | None
    mean_b: float | None
    diff: float | None
    lo: float | None
    hi: float | None
    hedges_g: float | None
    p: float | None
    p_adj: float | None = None
    verdict: str = NOT_ENOUGH

    @property
    def testable(self) -> bool:
        return self.p is not None and math.isfinite(self.p)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bootstrap_mean_ci(
    values: Sequence[float], conf: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> Estimate:
    """Mean and percentile-bootstrap CI of the mean; no CI below MIN_SEEDS values."""
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(x) == 0:
        return Estimate(0, None)
    mean = float(x.mean())
    if len(x) < MIN_SEEDS:
        return Estimate(len(x), mean)
    idx = _rng(seed).integers(0, len(x), size=(n_boot, len(x)))
    means = x[idx].mean(axis=1)
    q = (1 - conf) / 2
    lo, hi = np.quantile(means, [q, 1 - q])
    return Estimate(len(x), mean, float(lo), float(hi), float(x.std(ddof=1)))


def bootstrap_diff_ci(
    a: np.ndarray, b: np.ndarray, conf: float = 0.95, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap CI of mean(a) - mean(b), resampling each group separately."""
    rng = _rng(seed)
    ma = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1)
    mb = b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(axis=1)
    q = (1 - conf) / 2
    lo, hi = np.quantile(ma - mb, [q, 1 - q])
    return float(lo), float(hi)


def hedges_g(a: np.ndarray, b: np.ndarray) -> float | None:
    """Standardized difference (mean a - mean b) / pooled sd, small-sample corrected."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return None
    correction = 1 - 3 / (4 * (na + nb) - 9)
    return float((a.mean() - b.mean()) / pooled * correction)


def welch_p(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Welch t-test p-value; None when both groups have no variance."""
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        return None
    return float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def compare(
    axis: str, name_a: str, a: Sequence[float], name_b: str, b: Sequence[float], seed: int = 0
) -> Comparison:
    """Compare two groups of seed results (unadjusted: see :func:`adjust`)."""
    xa = np.asarray([v for v in a if v is not None and math.isfinite(v)], dtype=float)
    xb = np.asarray([v for v in b if v is not None and math.isfinite(v)], dtype=float)
    mean_a = float(xa.mean()) if len(xa) else None
    mean_b = float(xb.mean()) if len(xb) else None
    diff = mean_a - mean_b if mean_a is not None and mean_b is not None else None
    base = Comparison(
        axis, name_a, name_b, len(xa), len(xb), mean_a, mean_b, diff, None, None, None, None
    )
    if len(xa) < MIN_SEEDS or len(xb) < MIN_SEEDS:
        return base
    lo, hi = bootstrap_diff_ci(xa, xb, seed=seed)
    p = welch_p(xa, xb)
    return replace(base, lo=lo, hi=hi, hedges_g=hedges_g(xa, xb), p=p,
                   verdict=NO_VARIATION if p is None else NOT_SIGNIFICANT)  # fmt: skip


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (same order as given; monotone; capped at 1)."""
    p = np.asarray(pvalues, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def adjust(comparisons: Sequence[Comparison], alpha: float = ALPHA) -> list[Comparison]:
    """Holm-correct the testable comparisons together and set each verdict."""
    testable = [i for i, c in enumerate(comparisons) if c.testable]
    adjusted = holm([comparisons[i].p for i in testable]) if testable else []
    out = list(comparisons)
    for i, p_adj in zip(testable, adjusted, strict=True):
        verdict = SIGNIFICANT if p_adj < alpha else NOT_SIGNIFICANT
        out[i] = replace(out[i], p_adj=p_adj, verdict=verdict)
    return out

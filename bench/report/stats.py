"""Statistics the report may claim: means with bootstrap CIs, effect sizes, tests,
equivalence, and the status of every comparison.

- A cell's quality: the mean over its seed runs with a 95% bootstrap CI of the
  mean (``scipy.stats.bootstrap``, BCa; percentile when BCa is degenerate; no
  CI with fewer than two runs).
- A comparison of two groups: the difference of means, its 95% bootstrap CI
  (each group resampled on its own), Hedges' g (the difference in pooled
  standard deviations, small-sample corrected) and a two-sided Welch t-test.
- Many comparisons: Holm–Bonferroni step-down adjusted p-values (controls the
  family-wise error rate; no independence assumption), once for the difference
  tests and once for the equivalence tests.
- "No meaningful difference" only from an equivalence test: TOST, two
  one-sided Welch t-tests against ±:data:`EQUIVALENCE_MARGIN` (Schuirmann 1987;
  Lakens 2017, "Equivalence tests", Soc. Psychol. Personal. Sci.).

Decision rules (fixed before any run is judged), in this order:

1. fewer than :data:`MIN_RUNS` runs on a side: **inconclusive** (too few runs);
2. every run of both sides identical: **inconclusive** (no seed variation);
3. Holm-adjusted TOST p < :data:`ALPHA`: **not significant**, and the two are
   equivalent within the margin ("no meaningful difference"), even when the
   difference test also separates them: a difference the runs confirm but that
   lies inside the margin is real and negligible (the four outcomes of Lakens,
   Scheel and Isager 2018, "Equivalence testing for psychological research",
   Adv. Methods Pract. Psychol. Sci., Fig. 1: only "different and not
   equivalent" names a winner);
4. Holm-adjusted Welch p < :data:`ALPHA`: **significant**;
5. the difference is smaller than the seed noise floor (the pooled standard
   deviation of runs within a side): **inconclusive** (effect below the noise);
6. otherwise: **not significant** (a visible difference the runs do not confirm).

A side made only of cells that did not learn is decided before any of this
(:mod:`bench.report.analysis`): **inconclusive**.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as sps

ALPHA = 0.05
N_BOOT = 4000
MIN_SEEDS = 2  # runs needed for an interval
MIN_RUNS = 3  # runs per side needed for a significance verdict
# Equivalence margin of TOST, in units of the quality metric (nats for a loss,
# fraction for an accuracy): differences smaller than this count as no
# meaningful difference. 0.02 nats is 2% in perplexity.
EQUIVALENCE_MARGIN = 0.02
# Throughput: two cells within 10% of each other are equally fast. The same config,
# code and machine moved 6-13% in tokens/s between two commands as the machine's load
# changed (README, Throughput), and the same quickstart cell 8.6% between two quiet
# sweeps; a smaller difference says more about the machine than about the architecture.
SPEED_MARGIN = 1.10  # a ratio; tested as ±log(1.10) on log tokens/s

SIGNIFICANT = "significant"
NOT_SIGNIFICANT = "not significant"
INCONCLUSIVE = "inconclusive"
STATUSES = (SIGNIFICANT, NOT_SIGNIFICANT, INCONCLUSIVE)
# The label a reader sees for a not-significant comparison that TOST showed equivalent
# (rule 3): its verdict stays NOT_SIGNIFICANT (no winner), but "not significant" would
# read as "nothing shown" where equivalence was shown.
EQUIVALENT = "equivalent"


@dataclass(frozen=True)
class Estimate:
    """Mean of a group with its 95% CI (None when it cannot be formed)."""

    n: int
    mean: float | None
    lo: float | None = None
    hi: float | None = None
    sd: float | None = None

    def interval(self) -> tuple[float, float, float] | None:
        """(mean, lo, hi) when the CI was formed, else None."""
        if self.mean is None or self.lo is None or self.hi is None:
            return None
        return self.mean, self.lo, self.hi


@dataclass(frozen=True)
class Comparison:
    """Group ``a`` against group ``b`` on one metric (difference = mean a - mean b).

    ``verdict`` is one of :data:`STATUSES`; ``reason`` says why in one clause;
    ``equivalent`` is True only when TOST showed the difference within ±margin.
    """

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
    verdict: str = INCONCLUSIVE
    reason: str = ""
    p_tost: float | None = None
    p_tost_adj: float | None = None
    noise: float | None = None  # pooled within-side sd: the seed noise floor
    margin: float = EQUIVALENCE_MARGIN
    equivalent: bool = False
    excluded: tuple[str, ...] = ()  # cells left out because they did not learn

    @property
    def testable(self) -> bool:
        return self.p is not None and math.isfinite(self.p)


def _finite(values: Sequence[float | None]) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)


def _boot(data: tuple[np.ndarray, ...], statistic, seed: int, conf: float) -> tuple[float, float]:
    """scipy's bootstrap CI (BCa; percentile when BCa is undefined, e.g. ties)."""
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = sps.bootstrap(data, statistic, n_resamples=N_BOOT, confidence_level=conf,
                                method=method, vectorized=True, rng=np.random.default_rng(seed))  # fmt: skip
        lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
        if math.isfinite(lo) and math.isfinite(hi):
            return lo, hi
    return math.nan, math.nan


def _mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def bootstrap_mean_ci(
    values: Sequence[float | None], conf: float = 0.95, seed: int = 0
) -> Estimate:
    """Mean and bootstrap CI of the mean; no CI below MIN_SEEDS values."""
    x = _finite(values)
    if len(x) == 0:
        return Estimate(0, None)
    mean = float(x.mean())
    if len(x) < MIN_SEEDS:
        return Estimate(len(x), mean)
    if np.all(x == x[0]):
        return Estimate(len(x), mean, mean, mean, 0.0)
    lo, hi = _boot((x,), _mean, seed, conf)
    return Estimate(len(x), mean, lo, hi, float(x.std(ddof=1)))


def bootstrap_diff_ci(
    a: np.ndarray, b: np.ndarray, conf: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap CI of mean(a) - mean(b), resampling each group separately."""
    if np.all(a == a[0]) and np.all(b == b[0]):
        d = float(a[0] - b[0])
        return d, d
    return _boot((a, b), lambda x, y, axis=-1: x.mean(axis) - y.mean(axis), seed, conf)


def hedges_g(a: np.ndarray, b: np.ndarray) -> float | None:
    """Standardized difference (mean a - mean b) / pooled sd, small-sample corrected."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    pooled = pooled_sd(a, b)
    if not pooled:
        return None
    correction = 1 - 3 / (4 * (na + nb) - 9)
    return float((a.mean() - b.mean()) / pooled * correction)


def pooled_sd(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pooled within-group standard deviation (the seed noise floor of a comparison)."""
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        return None
    return math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))


def welch_p(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Welch t-test p-value; None when both groups have no variance."""
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        return None
    return float(sps.ttest_ind(a, b, equal_var=False).pvalue)


def tost_p(a: np.ndarray, b: np.ndarray, margin: float = EQUIVALENCE_MARGIN) -> float | None:
    """TOST p-value for |mean a - mean b| < margin: the larger of two one-sided Welch tests.

    H0: the difference is <= -margin or >= +margin. A small p says the two are
    equivalent within ±margin. None when both groups have no variance.
    """
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        return None
    lower = sps.ttest_ind(a + margin, b, equal_var=False, alternative="greater").pvalue
    upper = sps.ttest_ind(a - margin, b, equal_var=False, alternative="less").pvalue
    return float(max(lower, upper))


def compare(
    axis: str,
    name_a: str,
    a: Sequence[float | None],
    name_b: str,
    b: Sequence[float | None],
    seed: int = 0,
    margin: float = EQUIVALENCE_MARGIN,
) -> Comparison:
    """Compare two groups of seed results (unadjusted: :func:`adjust` sets the verdict)."""
    xa, xb = _finite(a), _finite(b)
    mean_a = float(xa.mean()) if len(xa) else None
    mean_b = float(xb.mean()) if len(xb) else None
    diff = mean_a - mean_b if mean_a is not None and mean_b is not None else None
    base = Comparison(axis, name_a, name_b, len(xa), len(xb), mean_a, mean_b, diff,
                      None, None, None, None, margin=margin)  # fmt: skip
    if len(xa) < MIN_SEEDS or len(xb) < MIN_SEEDS:
        return replace(base, reason=_too_few(len(xa), len(xb)))
    lo, hi = bootstrap_diff_ci(xa, xb, seed=seed)
    out = replace(base, lo=lo, hi=hi, hedges_g=hedges_g(xa, xb), noise=pooled_sd(xa, xb))
    if len(xa) < MIN_RUNS or len(xb) < MIN_RUNS:
        return replace(out, reason=_too_few(len(xa), len(xb)))
    p = welch_p(xa, xb)
    if p is None:
        return replace(out, reason="every run of each side gave the same value (no seed "
                       "variation), so no test is possible")  # fmt: skip
    return replace(out, p=p, p_tost=tost_p(xa, xb, margin))


def _too_few(na: int, nb: int) -> str:
    return f"too few runs ({na} vs {nb}; a verdict needs at least {MIN_RUNS} per side)"


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
    """Holm-correct the testable comparisons (difference and TOST families) and set verdicts."""
    testable = [i for i, c in enumerate(comparisons) if c.testable]
    adjusted = holm([_number(comparisons[i].p) for i in testable]) if testable else []
    tost = holm([_number(comparisons[i].p_tost) for i in testable]) if testable else []
    out = list(comparisons)
    for i, p_adj, t_adj in zip(testable, adjusted, tost, strict=True):
        out[i] = decide(replace(out[i], p_adj=p_adj, p_tost_adj=t_adj), alpha)
    return out


def decide(c: Comparison, alpha: float = ALPHA) -> Comparison:
    """Rules 3-6 of the module docstring for a tested, Holm-adjusted comparison."""
    assert c.p_adj is not None and c.diff is not None
    if c.p_tost_adj is not None and c.p_tost_adj < alpha:
        return replace(c, verdict=NOT_SIGNIFICANT, equivalent=True,
                       reason=f"equivalent within ±{c.margin:g} (TOST, Holm-adjusted p < {alpha})")  # fmt: skip
    if c.p_adj < alpha:
        return replace(c, verdict=SIGNIFICANT, reason=f"Holm-adjusted p < {alpha}")
    if c.noise is not None and abs(c.diff) < c.noise:
        return replace(c, verdict=INCONCLUSIVE,
                       reason=f"the difference {abs(c.diff):.3g} is below the seed noise floor "
                       f"(sd {c.noise:.3g}) and equivalence within ±{c.margin:g} is not shown")  # fmt: skip
    return replace(c, verdict=NOT_SIGNIFICANT,
                   reason=f"Holm-adjusted p ≥ {alpha} and equivalence within ±{c.margin:g} not shown")  # fmt: skip


def label(c: Comparison) -> str:
    """What the report calls a decided comparison: :data:`EQUIVALENT` when TOST showed the
    difference within the margin, else its verdict."""
    return EQUIVALENT if c.equivalent else c.verdict


def _number(p: float | None) -> float:
    """A p-value of a testable comparison (NaN where a test had none: Holm keeps it last)."""
    return math.nan if p is None else p

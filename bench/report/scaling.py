"""Does the gap between two cells grow, shrink, stay or flip as the model grows?

A size ladder runs every cell at several model sizes (rungs). At each rung the gap
between two cells is the difference of their mean quality, with its Welch interval.
Across rungs the trend of the gap is the
interaction slope of one ordinary least-squares fit of every run's value on
``log10(parameters)``, the side (a or b) and their product: how much the gap changes
per tenfold parameters, with its t interval (Tay et al. 2022, "Scaling Laws vs Model
Architectures", read architecture choices this way: rankings at one size can flip at
another).

The decision rule, fixed here before any ladder is judged:

- **flips**: the gaps at the smallest and at the largest rung are both significant
  (their intervals exclude 0) and of opposite signs;
- **grows** / **shrinks**: the slope's interval excludes 0; the gap grows when the
  slope carries it away from zero at the largest rung (the slope has the sign of the
  fitted gap there) and shrinks when it carries it towards zero;
- **stays**: the slope's interval lies within +-``margin`` per decade of parameters
  (an equivalence test of the slope: the gap changes by less than ``margin`` per
  tenfold size);
- **inconclusive** otherwise, and when fewer than two rungs, or fewer than two runs a
  side at a rung, are there to fit.

An extrapolation of the gap to a named size is the fitted line evaluated there, with
its confidence interval; it assumes the gap stays linear in log parameters beyond the
largest rung, which nothing measured supports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats as sps

from bench.report.stats import EQUIVALENCE_MARGIN

FLIPS, GROWS, SHRINKS, STAYS, INCONCLUSIVE = "flips", "grows", "shrinks", "stays", "inconclusive"
LEVEL = 0.95  # two-sided level of every interval here

Point = tuple[float, float]  # (parameters, value) of one run


@dataclass(frozen=True)
class RungGap:
    """The gap (mean a - mean b) at one model size, with its Welch interval."""

    params: float
    gap: float
    low: float
    high: float
    n_a: int
    n_b: int

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass
class Trend:
    """The gap per rung, the slope of the gap per decade of parameters, and the verdict."""

    verdict: str
    reason: str
    gaps: list[RungGap] = field(default_factory=list)
    slope: float | None = None  # change of the gap per tenfold parameters
    low: float | None = None
    high: float | None = None
    _fit: tuple[np.ndarray, np.ndarray, float, int] | None = None  # (beta, cov, center, df)

    def gap_at(self, params: float) -> tuple[float, float, float] | None:
        """The fitted gap at ``params`` parameters and its interval (None: no fit)."""
        if self._fit is None:
            return None
        beta, cov, center, df = self._fit
        c = np.array([0.0, 0.0, 1.0, math.log10(params) - center])
        mean = float(c @ beta)
        half = float(sps.t.ppf(0.5 + LEVEL / 2, df) * math.sqrt(max(c @ cov @ c, 0.0)))
        return mean, mean - half, mean + half


def rung_gaps(a: Sequence[Point], b: Sequence[Point]) -> list[RungGap]:
    """The Welch interval of the gap at every size where both sides have two runs or more."""
    out = []
    for size in sorted({p for p, _ in a} & {p for p, _ in b}):
        va = np.array([v for p, v in a if p == size])
        vb = np.array([v for p, v in b if p == size])
        if len(va) < 2 or len(vb) < 2:
            continue
        gap, low, high = _welch(va, vb)
        out.append(RungGap(size, gap, low, high, len(va), len(vb)))
    return out


def trend(a: Sequence[Point], b: Sequence[Point], margin: float = EQUIVALENCE_MARGIN) -> Trend:
    """The verdict on how the gap ``a - b`` changes with size (see the module docstring)."""
    gaps = rung_gaps(a, b)
    if len(gaps) < 2:
        return Trend(
            INCONCLUSIVE,
            f"{len(gaps)} rung(s) with at least two runs a side; a trend needs two or more",
            gaps,
        )
    sizes = {g.params for g in gaps}
    rows = [(p, 1.0, v) for p, v in a if p in sizes] + [(p, 0.0, v) for p, v in b if p in sizes]
    logs = np.log10([p for p, _, _ in rows])
    center = float(np.mean(np.log10(sorted(sizes))))
    x = logs - center
    side = np.array([s for _, s, _ in rows])
    y = np.array([v for _, _, v in rows])
    design = np.column_stack([np.ones_like(x), x, side, side * x])
    df = len(y) - design.shape[1]
    if df < 1:
        return Trend(INCONCLUSIVE, "too few runs to fit a slope with its interval", gaps)
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    sigma2 = float(resid @ resid) / df
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    slope = float(beta[3])
    half = float(sps.t.ppf(0.5 + LEVEL / 2, df) * math.sqrt(max(cov[3, 3], 0.0)))
    low, high = slope - half, slope + half
    fit = (beta, cov, center, df)
    first, last = gaps[0], gaps[-1]
    out = Trend(INCONCLUSIVE, "", gaps, slope, low, high, fit)
    if first.significant and last.significant and (first.gap > 0) != (last.gap > 0):
        out.verdict = FLIPS
        out.reason = (
            f"the gap is {first.gap:+.3g} [{first.low:+.3g}, {first.high:+.3g}] at "
            f"{_size(first.params)} and {last.gap:+.3g} [{last.low:+.3g}, {last.high:+.3g}] "
            f"at {_size(last.params)}"
        )
    elif low > 0 or high < 0:
        at_last = out.gap_at(last.params)
        away = at_last is not None and (slope > 0) == (at_last[0] > 0)
        out.verdict = GROWS if away else SHRINKS
        out.reason = f"the gap changes by {_interval(slope, low, high)} per tenfold parameters"
    elif -margin < low and high < margin:
        out.verdict = STAYS
        out.reason = (
            f"the gap changes by {_interval(slope, low, high)} per tenfold parameters, "
            f"within +-{margin:g}"
        )
    else:
        out.reason = (
            f"the slope {_interval(slope, low, high)} per tenfold parameters neither excludes "
            f"0 nor lies within +-{margin:g}: the rungs do not support a trend"
        )
    return out


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    diff = float(a.mean() - b.mean())
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(sps.t.ppf(0.5 + LEVEL / 2, df) * se)
    return diff, diff - half, diff + half


def _interval(mean: float, low: float, high: float) -> str:
    return f"{mean:+.3g} [{low:+.3g}, {high:+.3g}]"


def _size(params: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if params >= scale:
            return f"{params / scale:.3g}{unit} parameters"
    return f"{params:.0f} parameters"

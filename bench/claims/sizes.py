"""A claim at two or more model sizes: its rule judged at each rung, and each test's trend.

A claim whose sweep has a ``scale:`` ladder runs every cell at every rung (Tay et al.
2022, "Scaling Laws vs Model Architectures": a ranking at one size can flip at
another). The decision rule, fixed here before any ladder claim is judged:

- **each rung** is judged as the claim itself is (:func:`bench.claims.rules.judge`: the
  same tests, preconditions, controls and SESOIs) on that rung's runs alone;
- **the claim's verdict** is the rungs' verdict where every rung gives the same one,
  and *inconclusive* otherwise, naming the verdict at each size (a claim that holds at
  one size and not at another is not "consistent with the paper" about size);
- **each test's trend**: the test's effect (its contrast, oriented as in
  :mod:`bench.claims.rules`; a one-cell test's mean minus its threshold) against
  ``log10`` of the rung's parameters. The least-squares slope of the rung effects is
  itself a linear contrast of cell means, so it gets the same Welch-Satterthwaite
  interval as every test (95%, two-sided). It **flips** when the effects at the
  smallest and largest rung are both significant with opposite signs; **grows** /
  **shrinks** when the slope's interval excludes 0 and carries the effect away from /
  towards 0 at the largest rung; **stays** when the slope's interval lies within
  +-SESOI per tenfold parameters (a test without a SESOI cannot show "stays"); and is
  **inconclusive** otherwise (the words of :mod:`bench.report.scaling`).

A rung's size is the geometric mean of the parameter counts of its runs: the cells of
one rung differ by a few parameters (a final norm), and both sides of a contrast must
sit at one size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from bench.claims.metrics import Samples
from bench.claims.rules import (
    INCONCLUSIVE,
    Term,
    Verdict,
    contrast_interval,
    contrast_terms,
    judge,
)
from bench.claims.spec import ClaimSpec, RuleTest
from bench.report.scaling import FLIPS, GROWS, SHRINKS, STAYS

LEVEL = 0.95
Rung = tuple[str, ...]  # the ladder axes' values, in the order of ``SweepData.ladder``


@dataclass(frozen=True)
class RungVerdict:
    """The claim judged on one rung's runs."""

    name: str  # "d_model=64, n_heads=4"
    params: float
    verdict: Verdict


@dataclass(frozen=True)
class TestTrend:
    """How one test's effect changes across rungs."""

    test: RuleTest
    effects: list[tuple[str, float | None, float | None, float | None]]  # rung, effect, lo, hi
    slope: float | None
    low: float | None
    high: float | None
    verdict: str
    reason: str


@dataclass(frozen=True)
class SizeResult:
    rungs: list[RungVerdict]
    trends: list[TestTrend]


def rung_of(axes: dict[str, str], ladder: list[str]) -> Rung:
    return tuple(axes.get(a, "") for a in ladder)


def rung_sizes(rows: list[dict], ladder: list[str]) -> dict[Rung, float]:
    """Geometric-mean parameter count of each rung's runs (rows of a claim's sweep)."""
    logs: dict[Rung, list[float]] = {}
    for r in rows:
        if r.get("params"):
            key = tuple(str(r.get(a, "")) for a in ladder)
            logs.setdefault(key, []).append(math.log10(float(r["params"])))
    return {k: 10 ** (sum(v) / len(v)) for k, v in logs.items()}


def at_rung(samples: Samples, ladder: list[str], rung: Rung) -> Samples:
    """The samples of one rung (notes and policy kept)."""
    kept = [s for s in samples.values if rung_of(s.axes, ladder) == rung]
    return Samples(samples.metric, kept, list(samples.notes), samples.policy)


def judge_sizes(
    claim: ClaimSpec, samples: dict[str, Samples], ladder: list[str], sizes: dict[Rung, float]
) -> tuple[Verdict, SizeResult]:
    """The claim's verdict over its rungs, each rung's verdict, and each test's trend."""
    order = sorted(sizes, key=sizes.__getitem__)
    rungs = [
        RungVerdict(
            ", ".join(f"{a}={v}" for a, v in zip(ladder, rung, strict=True)),
            sizes[rung],
            judge(claim, {k: at_rung(s, ladder, rung) for k, s in samples.items()}),
        )
        for rung in order
    ]
    trends = [test_trend(t, samples[t.metric], claim, ladder, order, sizes) for t in claim.tests]
    return combine(rungs), SizeResult(rungs, trends)


def combine(rungs: list[RungVerdict]) -> Verdict:
    """Every rung's verdict when they agree; inconclusive naming each otherwise."""
    if not rungs:
        return Verdict(INCONCLUSIVE, "no rung of the ladder has runs", [], [])
    statuses = {r.verdict.status for r in rungs}
    largest = rungs[-1].verdict
    if len(statuses) == 1:
        reason = f"the same at every size ({len(rungs)} rungs); at the largest: {largest.reason}"
        return replace(largest, reason=reason)
    each = "; ".join(f"{r.verdict.status} at {r.name}" for r in rungs)
    return Verdict(INCONCLUSIVE, f"the sizes disagree: {each}", largest.tests, largest.unmet)


def _offset(t: RuleTest) -> float:
    """What a test's effect is measured from: 0 for a contrast, the threshold for one cell."""
    return float(t.value or 0.0) if t.kind in ("at_most", "at_least", "near") else 0.0


def test_trend(
    t: RuleTest,
    samples: Samples,
    claim: ClaimSpec,
    ladder: list[str],
    order: list[Rung],
    sizes: dict[Rung, float],
) -> TestTrend:
    """The test's effect at each rung, its slope per decade of parameters, the verdict."""
    metric = claim.metrics[t.metric]
    sign = 1.0 if metric.lower_is_better else -1.0
    off = _offset(t)
    per_rung: list[tuple[Rung, list[Term]]] = [
        (rung, contrast_terms(t, at_rung(samples, ladder, rung), sign)) for rung in order
    ]
    effects: list[tuple[str, float | None, float | None, float | None]] = []
    usable: list[tuple[Rung, list[Term], tuple[float, float, float]]] = []
    for rung, terms in per_rung:
        got = contrast_interval(terms, LEVEL)
        name = ", ".join(f"{a}={v}" for a, v in zip(ladder, rung, strict=True))
        if isinstance(got, str):
            effects.append((name, None, None, None))
            continue
        e, lo, hi = (x - off for x in got)
        effects.append((name, e, lo, hi))
        usable.append((rung, terms, (e, lo, hi)))

    def result(verdict: str, reason: str, fit: tuple[float, float, float] | None = None):
        slope, low, high = fit if fit is not None else (None, None, None)
        return TestTrend(t, effects, slope, low, high, verdict, reason)

    if len(usable) < 2:
        return result(
            INCONCLUSIVE, f"{len(usable)} rung(s) give this test an interval; a trend needs two"
        )
    xs = [math.log10(sizes[r]) for r, _, _ in usable]
    mean_x = sum(xs) / len(xs)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    slope_terms = [
        Term(term.weight * (x - mean_x) / sxx, term.selector, term.samples)
        for x, (_, terms, _) in zip(xs, usable, strict=True)
        for term in terms
    ]
    fit = contrast_interval(slope_terms, LEVEL)
    if isinstance(fit, str):
        return result(INCONCLUSIVE, fit)
    slope, low, high = fit
    (e0, lo0, hi0), (e1, lo1, hi1) = usable[0][2], usable[-1][2]
    both = (lo0 > 0 or hi0 < 0) and (lo1 > 0 or hi1 < 0)
    per = f"slope {slope:+.3g} per tenfold parameters [{low:+.3g}, {high:+.3g}]"
    if both and (e0 > 0) != (e1 > 0):
        return result(
            FLIPS, f"{e0:+.3g} at the smallest rung, {e1:+.3g} at the largest; {per}", fit
        )
    if low > 0 or high < 0:
        verdict = GROWS if (slope > 0) == (e1 > 0) else SHRINKS
        return result(
            verdict, f"{e0:+.3g} at the smallest rung, {e1:+.3g} at the largest; {per}", fit
        )
    if t.sesoi is not None and -t.sesoi < low and high < t.sesoi:
        return result(STAYS, f"{per}, within +-{t.sesoi:g} (the SESOI) per decade", fit)
    if t.sesoi is None:
        return result(
            INCONCLUSIVE, f"{per}: includes 0 (no SESOI, so 'stays' cannot be shown)", fit
        )
    return result(INCONCLUSIVE, f"{per}: includes 0 and reaches past +-{t.sesoi:g} per decade", fit)

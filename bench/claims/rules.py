"""The decision rule of a claim: registered tests, each a Welch interval of a contrast.

Every test estimates one *effect*, a linear contrast of cell means oriented so that
a positive effect is what the paper says (``a`` better than ``b``, a gap that
shrinks, ...), with a Welch-Satterthwaite t-interval (cells are independent groups
of seeds; unequal variances). The intervals of one claim are Bonferroni-adjusted:
with k tests each is a two-sided (1 - ALPHA / k) interval, so the claim's
family-wise error is at most ALPHA. Then, with ``margin`` m (in the metric's units):

========== =========================== ============== ==============
kind       effect                      holds if       fails if
========== =========================== ============== ==============
better     b - a (a lower is better)   low > m        high < m
not_worse  b - a                       low > -m       high < -m
gap_shrinks gap(where) - gap(then),    low > m        high < m
           gap = b - a
at_most    mean of a                   high < value   low > value
at_least   mean of a                   low > value    high < value
========== =========================== ============== ==============

(for a metric where higher is better, b - a becomes a - b). Otherwise the test is
*unclear*. A test is also unclear with fewer than :data:`MIN_RUNS` runs in a cell
it reads, or when every run it reads scored the same (no seed variation, so no
interval).

The verdict (fixed before the runs it judges): a precondition not met makes the
claim **inconclusive**; a test that fails makes it **not reproduced**; every test
holding makes it **reproduced**; otherwise **inconclusive**, naming the tests whose
intervals straddle their threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from scipy import stats as sps

from bench.claims.metrics import Sample, Samples
from bench.claims.spec import ClaimSpec, MetricSpec, Requirement, RuleTest, Selector
from bench.claims.spec import selector_matches as _match

ALPHA = 0.05
MIN_RUNS = 2
HOLDS, FAILS, UNCLEAR = "holds", "fails", "unclear"
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


@dataclass(frozen=True)
class Term:
    """weight x mean of the samples selected by ``selector``."""

    weight: float
    selector: Selector
    samples: list[Sample]

    @property
    def label(self) -> str:
        return describe(self.selector)


@dataclass(frozen=True)
class TestResult:
    """One test's effect, interval and status, in words for the report."""

    spec: RuleTest
    status: str
    effect: float | None
    low: float | None
    high: float | None
    level: float
    threshold: str
    sizes: dict[str, int]
    reason: str = ""

    @property
    def interval(self) -> str:
        if self.low is None or self.high is None:
            return ""
        return f"[{self.low:+.3g}, {self.high:+.3g}]"


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict with its reason, its tests and its preconditions."""

    status: str
    reason: str
    tests: list[TestResult]
    unmet: list[str]


def describe(selector: Selector | None) -> str:
    if not selector:
        return "all cells"
    return ", ".join(f"{k.removeprefix('model.')}={v}" for k, v in selector.items())


def contrast_interval(terms: list[Term], level: float) -> tuple[float, float, float] | str:
    """(effect, low, high) of sum(w * mean), Welch-Satterthwaite; a reason string when
    no interval can be formed."""
    for t in terms:
        if not t.samples:
            return f"{t.label}: no run recorded this metric"
        if len(t.samples) < MIN_RUNS:
            return f"{t.label}: {len(t.samples)} run(s), need {MIN_RUNS}"
    effect = sum(t.weight * _mean(t.samples) for t in terms)
    parts = [t.weight**2 * _var(t.samples) / len(t.samples) for t in terms]
    var = sum(parts)
    if var == 0:
        return "every run scored the same (no seed variation, so no interval)"
    df = var**2 / sum(p**2 / (len(t.samples) - 1) for p, t in zip(parts, terms, strict=True) if p)
    half = float(sps.t.ppf(0.5 + level / 2, df)) * math.sqrt(var)
    return effect, effect - half, effect + half


def _mean(s: list[Sample]) -> float:
    return sum(x.value for x in s) / len(s)


def _var(s: list[Sample]) -> float:
    m = _mean(s)
    return sum((x.value - m) ** 2 for x in s) / (len(s) - 1)


def _select(samples: Samples, *selectors: Selector | None) -> list[Sample]:
    merged: Selector = {}
    for s in selectors:
        merged.update(s or {})
    return samples.of(lambda axes: _match(merged, axes))


def _terms(t: RuleTest, samples: Samples, sign: float) -> list[Term]:
    """The contrast of a test; ``sign`` +1 when lower is better (effect = b - a)."""
    if t.kind in ("at_most", "at_least"):
        return [Term(1.0, t.a, _select(samples, t.a))]
    if t.kind == "gap_shrinks":
        out = []
        for ctx, w in ((t.where, 1.0), (t.then, -1.0)):
            out.append(Term(w * sign, {**t.b, **ctx}, _select(samples, t.b, ctx)))  # type: ignore[dict-item]
            out.append(Term(-w * sign, {**t.a, **ctx}, _select(samples, t.a, ctx)))  # type: ignore[dict-item]
        return out
    return [Term(sign, t.b or {}, _select(samples, t.b)), Term(-sign, t.a, _select(samples, t.a))]


Decide = Callable[[float, float, RuleTest], tuple[str, str]]


def _above(threshold: Callable[[RuleTest], float]) -> Decide:
    """holds when the whole interval is above the threshold, fails when below."""

    def decide(low: float, high: float, t: RuleTest) -> tuple[str, str]:
        th = threshold(t)
        return (HOLDS if low > th else FAILS if high < th else UNCLEAR), f"> {th:+.3g}"

    return decide


def _below(threshold: Callable[[RuleTest], float]) -> Decide:
    def decide(low: float, high: float, t: RuleTest) -> tuple[str, str]:
        th = threshold(t)
        return (HOLDS if high < th else FAILS if low > th else UNCLEAR), f"< {th:+.3g}"

    return decide


DECIDE: dict[str, Decide] = {
    "better": _above(lambda t: t.margin),
    "not_worse": _above(lambda t: -t.margin),
    "gap_shrinks": _above(lambda t: t.margin),
    "at_most": _below(lambda t: float(t.value)),  # type: ignore[arg-type]
    "at_least": _above(lambda t: float(t.value)),  # type: ignore[arg-type]
}


def run_test(t: RuleTest, samples: Samples, metric: MetricSpec, n_tests: int) -> TestResult:
    """One test of the rule at the claim's Bonferroni-adjusted level."""
    level = 1 - ALPHA / n_tests
    sign = 1.0 if metric.lower_is_better else -1.0
    terms = _terms(t, samples, sign)
    sizes = {term.label: len(term.samples) for term in terms}
    got = contrast_interval(terms, level)
    _, threshold = DECIDE[t.kind](0.0, 0.0, t)
    if isinstance(got, str):
        return TestResult(t, UNCLEAR, None, None, None, level, threshold, sizes, got)
    effect, low, high = got
    status, threshold = DECIDE[t.kind](low, high, t)
    return TestResult(t, status, effect, low, high, level, threshold, sizes)


def check_requirement(r: Requirement, samples: Samples) -> str | None:
    """None when met; else why not, in words."""
    chosen = samples.values if r.cells == "all" else _select(samples, r.cells)
    by_cell: dict[str, list[Sample]] = {}
    for s in chosen:
        by_cell.setdefault(s.cell, []).append(s)
    if not by_cell:
        return f"{r.says or r.metric}: no runs to check"
    bad = []
    for cell, ss in sorted(by_cell.items()):
        m = _mean(ss)
        if (r.at_least is not None and m < r.at_least) or (r.at_most is not None and m > r.at_most):
            bad.append(f"{cell} {m:.3g}")
    if not bad:
        return None
    bound = f">= {r.at_least}" if r.at_least is not None else f"<= {r.at_most}"
    return f"{r.says or r.metric} (needs {bound}) not met: {'; '.join(bad)}"


def judge(claim: ClaimSpec, samples: dict[str, Samples]) -> Verdict:
    """The claim's verdict from its samples (one :class:`Samples` per named metric)."""
    unmet = [
        why for r in claim.requires if (why := check_requirement(r, samples[r.metric])) is not None
    ]
    results = [
        run_test(t, samples[t.metric], claim.metrics[t.metric], len(claim.tests))
        for t in claim.tests
    ]
    if unmet:
        return Verdict(INCONCLUSIVE, "precondition not met: " + "; ".join(unmet), results, unmet)
    failed = [r for r in results if r.status == FAILS]
    if failed:
        return Verdict(NOT_REPRODUCED, "; ".join(_words(r) for r in failed), results, unmet)
    unclear = [r for r in results if r.status == UNCLEAR]
    if unclear:
        return Verdict(INCONCLUSIVE, "; ".join(_words(r) for r in unclear), results, unmet)
    return Verdict(REPRODUCED, "every test holds (see its table)", results, [])


def _words(r: TestResult) -> str:
    says = r.spec.says or f"{r.spec.kind} ({describe(r.spec.a)} vs {describe(r.spec.b)})"
    if r.effect is None:
        return f"{says}: {r.reason}"
    pct = round(100 * r.level, 1)
    return (
        f"{says}: effect {r.effect:+.3g}, {pct:g}% interval {r.interval}, "
        f"needs {r.threshold} ({r.status})"
    )

"""The decision rule of a claim: registered tests, each a Welch interval of a contrast.

Every test estimates one *effect*, a linear contrast of cell means oriented so that
a positive effect is what the paper says (``a`` better than ``b``, a gap that
shrinks, ...), with a Welch-Satterthwaite t-interval [low, high] (cells are
independent groups of seeds; unequal variances). The intervals are Bonferroni-
adjusted over the claim's evidence and control tests: with k of them each is a
two-sided (1 - ALPHA / k) interval. With ``s`` the test's smallest effect of
interest (``sesoi``) and ``v`` its ``value``, both in the metric's units:

=========== ========================== ========================== ==============================
kind        effect                     holds if                   fails if
=========== ========================== ========================== ==============================
better      b - a                      low > s                    high < s
gap_shrinks gap(where) - gap(then),    low > s                    high < s
            gap = b - a
not_worse   b - a                      low > -s                   high < -s
equivalent  b - a                      -s < low and high < s      low > s or high < -s
at_most     mean of a                  high < v                   low > v
at_least    mean of a                  low > v                    high < v
near        mean of a                  v - s < low, high < v + s  interval wholly outside
=========== ========================== ========================== ==============================

(b - a for a metric where lower is better; a - b where higher is better.) Otherwise
the test is *unclear*. So a ``better`` test *fails* when its interval lies within
+-SESOI or on the wrong side: a true null can come out "not reproduced", not only
"inconclusive" (Lakens 2017, equivalence testing with a smallest effect of interest).

A test is also unclear when it cannot inform:

- *censored*: two cells compared with each other (b and a of a pair, each pair of a
  gap) have every run at the same bound (the metric's best value: *ceiling*, or
  chance: *floor*, :mod:`bench.claims.metrics`); a one-cell test whose cell's runs
  all sit at a bound. One cell at a bound and the other not is fine (the contrast is
  then a bound on the effect);
- fewer than :data:`MIN_RUNS` runs in a cell it reads, or every run it reads scored
  the same (no seed variation, so no interval).

Roles and the verdict (fixed before the runs it judges), first match wins:

1. a precondition (``requires``) not met: **inconclusive**, naming it;
2. a *sanity* test that fails (it holds by construction, so the implementation is
   broken): **inconclusive**;
3. a *control* that fails: **inconclusive** ("control failed: ...");
4. an *evidence* test that fails: **not reproduced at this scale**;
5. every evidence test holds: **consistent with the paper at this scale** (an unclear
   control is reported: the control was not shown);
6. otherwise **inconclusive**, naming the unclear tests and why.

Sanity tests are reported, labelled "sanity check (holds by construction)", and never
counted as evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from scipy import stats as sps

from bench.claims.metrics import CEILING, FLOOR, Sample, Samples
from bench.claims.spec import ClaimSpec, MetricSpec, Requirement, RuleTest, Selector
from bench.claims.spec import selector_matches as _match

ALPHA = 0.05
MIN_RUNS = 2
HOLDS, FAILS, UNCLEAR = "holds", "fails", "unclear"
CONSISTENT = "consistent with the paper at this scale"
NOT_REPRODUCED = "not reproduced at this scale"
INCONCLUSIVE = "inconclusive"
SANITY_LABEL = "sanity check (holds by construction)"


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

    @property
    def role(self) -> str:
        return SANITY_LABEL if self.spec.role == "sanity" else self.spec.role


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict with its reason, its tests and its preconditions; ``notes``:
    what stands beside the verdict (a control that was not shown)."""

    status: str
    reason: str
    tests: list[TestResult]
    unmet: list[str]
    notes: tuple[str, ...] = ()


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


def contrast_terms(t: RuleTest, samples: Samples, sign: float) -> list[Term]:
    """The contrast of a test; ``sign`` +1 when lower is better (effect = b - a).
    Pair kinds give [b, a]; gap_shrinks [b, a] under ``where`` then under ``then``."""
    if t.kind in ("at_most", "at_least", "near"):
        return [Term(1.0, t.a, _select(samples, t.a))]
    assert t.b is not None
    if t.kind == "gap_shrinks":
        out = []
        for ctx, w in ((t.where, 1.0), (t.then, -1.0)):
            out.append(Term(w * sign, {**t.b, **(ctx or {})}, _select(samples, t.b, ctx)))
            out.append(Term(-w * sign, {**t.a, **(ctx or {})}, _select(samples, t.a, ctx)))
        return out
    return [Term(sign, t.b, _select(samples, t.b)), Term(-sign, t.a, _select(samples, t.a))]


def censored(terms: list[Term]) -> str | None:
    """Why the contrast cannot inform (cells compared with each other all at one
    bound), or None. Terms come in compared pairs (or one cell alone)."""
    groups = [terms] if len(terms) == 1 else [terms[i : i + 2] for i in range(0, len(terms), 2)]
    for group in groups:
        runs = [s for term in group for s in term.samples]
        for bound in (CEILING, FLOOR):
            if runs and all(s.bound == bound for s in runs):
                cells = " and ".join(term.label for term in group)
                where = "the best possible value" if bound == CEILING else "chance (or worse)"
                return f"unclear: {bound} (every run of {cells} at {where}, so no contrast)"
    return None


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


def _within(centre: Callable[[RuleTest], float]) -> Decide:
    """holds when the interval lies inside centre +- sesoi, fails when wholly outside."""

    def decide(low: float, high: float, t: RuleTest) -> tuple[str, str]:
        c, s = centre(t), float(t.sesoi or 0.0)
        lo, hi = c - s, c + s
        status = HOLDS if lo < low and high < hi else FAILS if low > hi or high < lo else UNCLEAR
        return status, f"within ({lo:+.3g}, {hi:+.3g})"

    return decide


DECIDE: dict[str, Decide] = {
    "better": _above(lambda t: float(t.sesoi or 0.0)),
    "gap_shrinks": _above(lambda t: float(t.sesoi or 0.0)),
    "not_worse": _above(lambda t: -float(t.sesoi or 0.0)),
    "equivalent": _within(lambda t: 0.0),
    "at_most": _below(lambda t: float(t.value or 0.0)),
    "at_least": _above(lambda t: float(t.value or 0.0)),
    "near": _within(lambda t: float(t.value or 0.0)),
}


def run_test(t: RuleTest, samples: Samples, metric: MetricSpec, n_tests: int) -> TestResult:
    """One test of the rule at the claim's Bonferroni-adjusted level (``n_tests``: the
    claim's evidence and control tests)."""
    level = 1 - ALPHA / max(n_tests, 1)
    sign = 1.0 if metric.lower_is_better else -1.0
    terms = contrast_terms(t, samples, sign)
    sizes = {term.label: len(term.samples) for term in terms}
    got = contrast_interval(terms, level)
    _, threshold = DECIDE[t.kind](0.0, 0.0, t)
    if isinstance(got, str):
        return TestResult(t, UNCLEAR, None, None, None, level, threshold, sizes, got)
    effect, low, high = got
    status, threshold = DECIDE[t.kind](low, high, t)
    why_not = censored(terms)
    if why_not is not None:
        return TestResult(t, UNCLEAR, effect, low, high, level, threshold, sizes, why_not)
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
    if not bad or (r.some and len(bad) < len(by_cell)):
        return None
    bound = f">= {r.at_least}" if r.at_least is not None else f"<= {r.at_most}"
    who = "in some cell" if r.some else ""
    return f"{r.says or r.metric} (needs {bound}{who and ' ' + who}) not met: {'; '.join(bad)}"


def judge(claim: ClaimSpec, samples: dict[str, Samples]) -> Verdict:
    """The claim's verdict from its samples (one :class:`Samples` per named metric)."""
    unmet = [
        why for r in claim.requires if (why := check_requirement(r, samples[r.metric])) is not None
    ]
    counted = sum(1 for t in claim.tests if t.role != "sanity")
    results = [
        run_test(t, samples[t.metric], claim.metrics[t.metric], counted) for t in claim.tests
    ]

    def of(role: str, status: str | None = None) -> list[TestResult]:
        return [r for r in results if r.spec.role == role and status in (None, r.status)]

    if unmet:
        return Verdict(INCONCLUSIVE, "precondition not met: " + "; ".join(unmet), results, unmet)
    if broken := of("sanity", FAILS):
        why = "; ".join(_words(r) for r in broken)
        return Verdict(INCONCLUSIVE, f"sanity check failed (implementation broken?): {why}",
                       results, unmet)  # fmt: skip
    if failed := of("control", FAILS):
        why = "; ".join(_words(r) for r in failed)
        return Verdict(INCONCLUSIVE, f"control failed: {why}", results, unmet)
    notes = tuple(f"control not shown: {_words(r)}" for r in of("control", UNCLEAR))
    if failed := of("evidence", FAILS):
        why = "; ".join(_words(r) for r in failed)
        return Verdict(NOT_REPRODUCED, why, results, unmet, notes)
    if unclear := of("evidence", UNCLEAR):
        why = "; ".join(_words(r) for r in unclear)
        return Verdict(INCONCLUSIVE, f"unclear: {why}", results, unmet, notes)
    return Verdict(CONSISTENT, "every evidence test holds (see its table)", results, [], notes)


def _words(r: TestResult) -> str:
    says = r.spec.says or f"{r.spec.kind} ({describe(r.spec.a)} vs {describe(r.spec.b)})"
    if r.effect is None:
        return f"{says}: {r.reason}"
    pct = round(100 * r.level, 1)
    text = f"{says}: effect {r.effect:+.3g}, {pct:g}% interval {r.interval}, needs {r.threshold}"
    return f"{text} ({r.reason})" if r.reason else f"{text} ({r.status})"

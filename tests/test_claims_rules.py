"""A claim's decision rule: Welch intervals of contrasts, Bonferroni-adjusted, fixed verdicts."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from bench.claims import rules
from bench.claims.metrics import Sample, Samples
from bench.claims.spec import ClaimSpec, MetricSpec, Requirement, RuleTest

LOWER = MetricSpec(key="val/loss")
HIGHER = MetricSpec(key="val/acc", lower_is_better=False)


def samples(cells: dict[str, list[float]], axis: str = "pe") -> Samples:
    """``{"alibi": [..]}`` -> samples of cells ``pe=alibi`` (several axes: ``"a=1,b=2"``)."""
    out = Samples("m")
    for cell, values in cells.items():
        axes = dict(kv.split("=") for kv in cell.split(",")) if "=" in cell else {axis: cell}
        for i, v in enumerate(values):
            out.values.append(Sample(cell, axes, i, v))
    return out


def test_better_holds_when_the_whole_interval_clears_the_margin():
    s = samples({"alibi": [0.10, 0.12, 0.11], "sin": [0.90, 0.95, 0.85]})
    t = RuleTest(kind="better", metric="m", a={"pe": "alibi"}, b={"pe": "sin"})
    r = rules.run_test(t, s, LOWER, n_tests=1)
    assert r.status == rules.HOLDS
    assert r.effect == pytest.approx(0.9 - 0.11)
    assert r.low > 0


def test_better_fails_when_b_is_clearly_better_and_is_unclear_when_it_straddles():
    t = RuleTest(kind="better", metric="m", a={"pe": "alibi"}, b={"pe": "sin"})
    clear = samples({"alibi": [0.90, 0.95, 0.85], "sin": [0.10, 0.12, 0.11]})
    assert rules.run_test(t, clear, LOWER, 1).status == rules.FAILS
    noisy = samples({"alibi": [0.1, 0.9, 0.5], "sin": [0.2, 0.8, 0.6]})
    assert rules.run_test(t, noisy, LOWER, 1).status == rules.UNCLEAR


def test_higher_is_better_metrics_flip_the_orientation():
    s = samples({"nope": [0.8, 0.82, 0.81], "learned": [0.3, 0.31, 0.29]})
    t = RuleTest(kind="better", metric="m", a={"pe": "nope"}, b={"pe": "learned"})
    assert rules.run_test(t, s, HIGHER, 1).status == rules.HOLDS
    assert rules.run_test(t, s, LOWER, 1).status == rules.FAILS


def test_the_interval_is_welch_satterthwaite_at_the_bonferroni_level():
    a, b = [1.0, 1.2, 1.1, 1.3], [2.0, 2.4, 1.9]
    s = samples({"x": a, "y": b})
    t = RuleTest(kind="better", metric="m", a={"pe": "x"}, b={"pe": "y"})
    r = rules.run_test(t, s, LOWER, n_tests=3)
    assert r.level == pytest.approx(1 - 0.05 / 3)
    # scipy's Welch interval of mean(b) - mean(a) at the same level
    ci = sps.ttest_ind(b, a, equal_var=False).confidence_interval(1 - 0.05 / 3)
    assert (r.low, r.high) == pytest.approx((ci.low, ci.high))


def test_not_worse_allows_the_margin_and_fails_beyond_it():
    t = RuleTest(kind="not_worse", metric="m", a={"pe": "nope"}, b={"pe": "learned"}, margin=0.05)
    slightly = samples({"nope": [0.70, 0.71, 0.72], "learned": [0.72, 0.73, 0.71]})
    assert rules.run_test(t, slightly, HIGHER, 1).status == rules.HOLDS
    far = samples({"nope": [0.30, 0.31, 0.32], "learned": [0.72, 0.73, 0.71]})
    assert rules.run_test(t, far, HIGHER, 1).status == rules.FAILS


def test_gap_shrinks_compares_the_gap_under_two_conditions():
    # no warm-up: post is 1.0 worse than pre; with warm-up: 0.1 worse
    cells = {
        "norm=pre,w=0": [0.10, 0.12, 0.11],
        "norm=post,w=0": [1.10, 1.05, 1.15],
        "norm=pre,w=100": [0.10, 0.11, 0.12],
        "norm=post,w=100": [0.20, 0.22, 0.21],
    }
    t = RuleTest(kind="gap_shrinks", metric="m", a={"norm": "pre"}, b={"norm": "post"},
                 where={"w": 0}, then={"w": 100})  # fmt: skip
    r = rules.run_test(t, samples(cells), LOWER, 1)
    assert r.effect == pytest.approx((1.10 - 0.11) - (0.21 - 0.11))
    assert r.status == rules.HOLDS
    grows = {**cells, "norm=post,w=100": [2.0, 2.1, 2.2]}
    assert rules.run_test(t, samples(grows), LOWER, 1).status == rules.FAILS


def test_at_most_judges_one_cell_against_a_value():
    t = RuleTest(kind="at_most", metric="m", a={"pe": "alibi"}, value=0.05)
    assert rules.run_test(t, samples({"alibi": [0.0, 0.01, -0.01]}), LOWER, 1).status == "holds"
    assert rules.run_test(t, samples({"alibi": [0.5, 0.51, 0.49]}), LOWER, 1).status == "fails"


def test_too_few_runs_or_no_seed_variation_is_unclear_with_the_reason():
    t = RuleTest(kind="better", metric="m", a={"pe": "x"}, b={"pe": "y"})
    one = rules.run_test(t, samples({"x": [0.1], "y": [0.9, 0.8]}), LOWER, 1)
    assert one.status == rules.UNCLEAR and "1 run(s), need 2" in one.reason
    same = rules.run_test(t, samples({"x": [0.0, 0.0], "y": [0.0, 0.0]}), HIGHER, 1)
    assert same.status == rules.UNCLEAR and "no seed variation" in same.reason


def _claim(tests: list[dict], requires: list[dict] | None = None) -> ClaimSpec:
    return ClaimSpec(
        id="c", title="t", citation="c", url="u", statement="s", scale="s",
        sweep={"compare": {"model.pe": ["x", "y"]}},
        metrics={"m": {"key": "val/loss"}},
        tests=tests, requires=requires or [],
    )  # fmt: skip


def test_the_verdict_needs_every_test_to_hold_and_one_failure_is_not_reproduced():
    good = samples({"x": [0.1, 0.11, 0.12], "y": [0.9, 0.91, 0.92]})
    holds = {"kind": "better", "metric": "m", "a": {"pe": "x"}, "b": {"pe": "y"}}
    fails = {"kind": "better", "metric": "m", "a": {"pe": "y"}, "b": {"pe": "x"}}
    v = rules.judge(_claim([holds]), {"m": good})
    assert v.status == rules.REPRODUCED and v.reason == "every test holds (see its table)"
    v = rules.judge(_claim([holds, fails]), {"m": good})
    assert v.status == rules.NOT_REPRODUCED
    noisy = samples({"x": [0.1, 0.9, 0.5], "y": [0.2, 0.8, 0.6]})
    v = rules.judge(_claim([holds]), {"m": noisy})
    assert v.status == rules.INCONCLUSIVE and "unclear" in v.reason


def test_an_unmet_precondition_makes_the_claim_inconclusive_whatever_the_tests_say():
    good = samples({"x": [0.1, 0.11, 0.12], "y": [0.9, 0.91, 0.92]})
    holds = {"kind": "better", "metric": "m", "a": {"pe": "x"}, "b": {"pe": "y"}}
    req = {"metric": "m", "cells": "all", "at_most": 0.5, "says": "every cell fits"}
    v = rules.judge(_claim([holds], [req]), {"m": good})
    assert v.status == rules.INCONCLUSIVE
    assert "every cell fits (needs <= 0.5) not met: y 0.91" in v.reason


def test_a_requirement_reads_cell_means():
    r = Requirement(metric="m", cells={"pe": "x"}, at_least=0.95)
    assert rules.check_requirement(r, samples({"x": [0.96, 0.99]})) is None
    assert "x 0.9" in (rules.check_requirement(r, samples({"x": [0.9, 0.9]})) or "")


def test_intervals_are_finite_numbers():
    s = samples({"x": [0.1, 0.2], "y": [0.5, 0.7]})
    t = RuleTest(kind="better", metric="m", a={"pe": "x"}, b={"pe": "y"})
    r = rules.run_test(t, s, LOWER, 1)
    assert math.isfinite(r.low) and math.isfinite(r.high) and r.low < r.effect < r.high

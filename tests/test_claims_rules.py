"""A claim's decision rule: Welch intervals of contrasts, Bonferroni-adjusted, judged
against a smallest effect of interest, censored at the task's bounds, fixed verdicts."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from bench.claims import rules
from bench.claims.metrics import CEILING, FLOOR, Sample, Samples
from bench.claims.spec import ClaimSpec, MetricSpec, Requirement, RuleTest

LOWER = MetricSpec(key="val/loss")
HIGHER = MetricSpec(key="val/acc", lower_is_better=False)


def samples(cells: dict[str, list[float]], axis: str = "pe", bound: str | None = None) -> Samples:
    """``{"alibi": [..]}`` -> samples of cells ``pe=alibi`` (several axes: ``"a=1,b=2"``);
    ``bound``: every sample sits at it."""
    out = Samples("m")
    for cell, values in cells.items():
        axes = dict(kv.split("=") for kv in cell.split(",")) if "=" in cell else {axis: cell}
        for i, v in enumerate(values):
            out.values.append(Sample(cell, axes, i, v, bound=bound))
    return out


def make(kind: str, **fields) -> RuleTest:
    """A test of cells pe=x (a) and pe=y (b) unless given."""
    base = {"metric": "m", "a": {"pe": "x"}, "why": "constructed"}
    if kind in ("better", "not_worse", "equivalent", "gap_shrinks"):
        base["b"] = {"pe": "y"}
    return RuleTest(kind=kind, **{**base, **fields})


def status(t: RuleTest, cells: dict[str, list[float]], metric: MetricSpec = LOWER) -> str:
    return rules.run_test(t, samples(cells), metric, n_tests=1).status


# Constructed samples: effect b - a (lower is better) of about +1.0, +0.05 and -1.0,
# each with a narrow interval, and one with a wide interval around +0.1.
CLEAR_GAIN = {"x": [0.10, 0.12, 0.11], "y": [1.10, 1.12, 1.11]}
TINY_GAIN = {"x": [0.100, 0.101, 0.102], "y": [0.150, 0.151, 0.152]}
WRONG_WAY = {"x": [1.10, 1.12, 1.11], "y": [0.10, 0.12, 0.11]}
NOISY = {"x": [0.1, 0.9, 0.5], "y": [0.2, 1.0, 0.7]}

# (test, samples, expected status): every kind reaches holds, fails and unclear
EVERY_OUTCOME = [
    ("better clears the SESOI", make("better", sesoi=0.5), CLEAR_GAIN, "holds"),
    ("better within +-SESOI fails", make("better", sesoi=0.5), TINY_GAIN, "fails"),
    ("better on the wrong side fails", make("better", sesoi=0.5), WRONG_WAY, "fails"),
    ("better straddling the SESOI", make("better", sesoi=0.5), NOISY, "unclear"),
    ("not_worse: a gain", make("not_worse", sesoi=0.1), CLEAR_GAIN, "holds"),
    ("not_worse: a small gain", make("not_worse", sesoi=0.1), TINY_GAIN, "holds"),
    ("not_worse: clearly worse", make("not_worse", sesoi=0.1), WRONG_WAY, "fails"),
    ("not_worse: noisy", make("not_worse", sesoi=0.1), NOISY, "unclear"),
    ("equivalent within +-SESOI", make("equivalent", sesoi=0.1), TINY_GAIN, "holds"),
    ("equivalent: a large gain", make("equivalent", sesoi=0.1), CLEAR_GAIN, "fails"),
    ("equivalent: a large loss", make("equivalent", sesoi=0.1), WRONG_WAY, "fails"),
    ("equivalent: noisy", make("equivalent", sesoi=0.1), NOISY, "unclear"),
    ("at_most below", make("at_most", value=0.5), {"x": [0.10, 0.11, 0.12]}, "holds"),
    ("at_most above", make("at_most", value=0.5), {"x": [1.10, 1.11, 1.12]}, "fails"),
    ("at_most straddling", make("at_most", value=0.5), {"x": [0.1, 0.9, 0.5]}, "unclear"),
    ("at_least above", make("at_least", value=0.5), {"x": [1.10, 1.11, 1.12]}, "holds"),
    ("at_least below", make("at_least", value=0.5), {"x": [0.10, 0.11, 0.12]}, "fails"),
    ("at_least straddling", make("at_least", value=0.5), {"x": [0.1, 0.9, 0.5]}, "unclear"),
    ("near inside", make("near", value=1.0, sesoi=0.1), {"x": [1.00, 1.01, 0.99]}, "holds"),
    ("near outside", make("near", value=1.0, sesoi=0.1), {"x": [0.50, 0.51, 0.49]}, "fails"),
    ("near straddling", make("near", value=1.0, sesoi=0.1), {"x": [0.8, 1.2, 1.0]}, "unclear"),
]


@pytest.mark.parametrize("case", EVERY_OUTCOME, ids=[c[0] for c in EVERY_OUTCOME])
def test_every_kind_reaches_holds_fails_and_unclear(case):
    _, t, cells, expected = case
    assert status(t, cells) == expected


GAP = {  # no warm-up: post is 1.0 worse than pre; with warm-up: 0.1 worse
    "norm=pre,w=0": [0.10, 0.12, 0.11],
    "norm=post,w=0": [1.10, 1.05, 1.15],
    "norm=pre,w=100": [0.10, 0.11, 0.12],
    "norm=post,w=100": [0.20, 0.22, 0.21],
}
GAP_TEST = make("gap_shrinks", a={"norm": "pre"}, b={"norm": "post"}, where={"w": 0},
                then={"w": 100}, sesoi=0.3)  # fmt: skip


def test_gap_shrinks_holds_fails_and_is_unclear():
    r = rules.run_test(GAP_TEST, samples(GAP), LOWER, 1)
    assert r.effect == pytest.approx((1.10 - 0.11) - (0.21 - 0.11))
    assert r.status == rules.HOLDS
    same_gap = {**GAP, "norm=post,w=100": [1.10, 1.05, 1.15]}
    assert status(GAP_TEST, same_gap) == rules.FAILS  # gap unchanged: within +-SESOI
    grows = {**GAP, "norm=post,w=100": [2.0, 2.1, 2.2]}
    assert status(GAP_TEST, grows) == rules.FAILS
    noisy = {**GAP, "norm=post,w=100": [0.2, 1.5, 0.9]}
    assert status(GAP_TEST, noisy) == rules.UNCLEAR


def test_higher_is_better_metrics_flip_the_orientation():
    s = {"x": [0.8, 0.82, 0.81], "y": [0.3, 0.31, 0.29]}
    t = make("better", sesoi=0.1)
    assert status(t, s, HIGHER) == rules.HOLDS
    assert status(t, s, LOWER) == rules.FAILS


def test_the_interval_is_welch_satterthwaite_at_the_bonferroni_level():
    a, b = [1.0, 1.2, 1.1, 1.3], [2.0, 2.4, 1.9]
    r = rules.run_test(make("better", sesoi=0.1), samples({"x": a, "y": b}), LOWER, n_tests=3)
    assert r.level == pytest.approx(1 - 0.05 / 3)
    # scipy's Welch interval of mean(b) - mean(a) at the same level
    ci = sps.ttest_ind(b, a, equal_var=False).confidence_interval(1 - 0.05 / 3)
    assert (r.low, r.high) == pytest.approx((ci.low, ci.high))


def test_too_few_runs_or_no_seed_variation_is_unclear_with_the_reason():
    t = make("better", sesoi=0.1)
    one = rules.run_test(t, samples({"x": [0.1], "y": [0.9, 0.8]}), LOWER, 1)
    assert one.status == rules.UNCLEAR and "1 run(s), need 2" in one.reason
    same = rules.run_test(t, samples({"x": [0.0, 0.0], "y": [0.0, 0.0]}), HIGHER, 1)
    assert same.status == rules.UNCLEAR and "no seed variation" in same.reason


def _bounded(cells: dict[str, tuple[list[float], str | None]]) -> Samples:
    out = Samples("m")
    for cell, (values, bound) in cells.items():
        axes = dict(kv.split("=") for kv in cell.split(","))
        out.values += [Sample(cell, axes, i, v, bound=bound) for i, v in enumerate(values)]
    return out


def test_two_cells_both_at_the_ceiling_or_both_at_the_floor_are_censored():
    t = make("better", a={"pe": "x"}, b={"pe": "y"}, sesoi=0.001)
    top = _bounded(
        {"pe=x": ([0.001, 0.002, 0.001], CEILING), "pe=y": ([0.01, 0.02, 0.015], CEILING)}
    )
    r = rules.run_test(t, top, LOWER, 1)
    assert r.status == rules.UNCLEAR and r.reason.startswith("unclear: ceiling")
    assert r.effect is not None  # the interval is still shown
    low = _bounded({"pe=x": ([2.20, 2.21, 2.22], FLOOR), "pe=y": ([2.30, 2.35, 2.4], FLOOR)})
    r = rules.run_test(t, low, LOWER, 1)
    assert r.status == rules.UNCLEAR and r.reason.startswith("unclear: floor")
    one_side = _bounded(
        {"pe=x": ([0.001, 0.002, 0.001], CEILING), "pe=y": ([2.3, 2.35, 2.4], None)}
    )
    assert rules.run_test(t, one_side, LOWER, 1).status == rules.HOLDS  # a bound on the effect


def test_the_postln_warmup_ceiling_censors_the_interaction_but_not_the_main_effect():
    # version 1 of postln-warmup: three of four cells solve the task (loss ~0)
    cells = _bounded({
        "norm=pre,w=0": ([0.001, 0.002, 0.001], CEILING),
        "norm=post,w=0": ([2.40, 2.45, 2.50], FLOOR),
        "norm=pre,w=100": ([0.001, 0.001, 0.002], CEILING),
        "norm=post,w=100": ([0.002, 0.001, 0.001], CEILING),
    })  # fmt: skip
    main = make("better", a={"norm": "pre", "w": 0}, b={"norm": "post", "w": 0}, sesoi=0.1)
    assert rules.run_test(main, cells, LOWER, 2).status == rules.HOLDS
    inter = rules.run_test(GAP_TEST, cells, LOWER, 2)
    assert inter.status == rules.UNCLEAR
    assert inter.reason.startswith("unclear: ceiling") and "w=100" in inter.reason


def test_a_one_cell_test_whose_runs_all_sit_at_a_bound_is_censored():
    t = make("at_least", value=0.5)
    at_top = _bounded({"pe=x": ([0.99, 1.0, 0.995], CEILING)})
    assert rules.run_test(t, at_top, HIGHER, 1).status == rules.UNCLEAR


def _claim(tests: list[dict], requires: list[dict] | None = None) -> ClaimSpec:
    return ClaimSpec(
        id="c", title="t", citation="c", url="u", statement="s", scale="s", caveat="c",
        sweep={"compare": {"model.pe": ["x", "y", "z"]}},
        metrics={"m": {"key": "val/loss"}},
        tests=tests, requires=requires or [{"metric": "m", "at_most": 10.0}],
        no_control=None if any(t.get("role") == "control" for t in tests) else "none",
    )  # fmt: skip


GOOD = samples({"x": [0.1, 0.11, 0.12], "y": [0.9, 0.91, 0.92], "z": [0.1, 0.12, 0.11]})
HOLDS = {"kind": "better", "metric": "m", "a": {"pe": "x"}, "b": {"pe": "y"}, "sesoi": 0.1,
         "why": "w"}  # fmt: skip
FAILS = {**HOLDS, "a": {"pe": "y"}, "b": {"pe": "z"}}  # z is better than y
NULL = {"kind": "equivalent", "metric": "m", "a": {"pe": "x"}, "b": {"pe": "z"}, "sesoi": 0.1,
        "why": "w", "role": "control"}  # fmt: skip


def test_every_evidence_test_holding_is_consistent_and_one_failing_is_not_reproduced():
    v = rules.judge(_claim([HOLDS]), {"m": GOOD})
    assert v.status == "consistent with the paper at this scale"
    v = rules.judge(_claim([HOLDS, FAILS]), {"m": GOOD})
    assert v.status == "not reproduced at this scale"
    noisy = samples({"x": [0.1, 0.9, 0.5], "y": [0.2, 0.8, 0.6]})
    v = rules.judge(_claim([HOLDS]), {"m": noisy})
    assert v.status == "inconclusive" and v.reason.startswith("unclear:")


def test_a_sanity_check_is_reported_but_never_counted():
    sanity = {**FAILS, "a": {"pe": "x"}, "b": {"pe": "y"}, "sesoi": 0.2, "role": "sanity"}
    v = rules.judge(_claim([{**HOLDS, "a": {"pe": "z"}}, sanity]), {"m": GOOD})
    assert v.status == rules.CONSISTENT
    assert [r.role for r in v.tests] == ["evidence", "sanity check (holds by construction)"]
    assert v.tests[0].level == pytest.approx(1 - 0.05)  # not Bonferroni'd over the sanity check
    # a sanity check alone can never make a claim consistent: a claim needs evidence
    with pytest.raises(ValueError, match="none has role evidence"):
        _claim([sanity])


def test_a_failed_sanity_check_means_a_broken_implementation_and_is_inconclusive():
    broken = {**FAILS, "role": "sanity"}
    v = rules.judge(_claim([HOLDS, broken]), {"m": GOOD})
    assert v.status == rules.INCONCLUSIVE and v.reason.startswith("sanity check failed")


def test_a_failed_control_makes_the_claim_inconclusive_whatever_the_evidence_says():
    z_vs_y = {**NULL, "a": {"pe": "z"}, "b": {"pe": "y"}}  # they differ by 0.8: not equivalent
    v = rules.judge(_claim([HOLDS, z_vs_y]), {"m": GOOD})
    assert v.status == rules.INCONCLUSIVE and v.reason.startswith("control failed:")
    x_vs_y = {**NULL, "b": {"pe": "y"}}
    v = rules.judge(_claim([FAILS, x_vs_y]), {"m": GOOD})
    assert v.status == rules.INCONCLUSIVE and v.reason.startswith("control failed:")


def test_a_control_that_holds_or_is_unclear_lets_the_evidence_decide_and_is_noted():
    v = rules.judge(_claim([HOLDS, NULL]), {"m": GOOD})
    assert v.status == rules.CONSISTENT and v.notes == ()
    wide = samples({"x": [0.1, 0.11, 0.12], "y": [0.9, 0.91, 0.92], "z": [0.0, 0.3, 0.2]})
    v = rules.judge(_claim([HOLDS, NULL]), {"m": wide})
    assert v.status == rules.CONSISTENT
    assert len(v.notes) == 1 and v.notes[0].startswith("control not shown:")


def test_an_unmet_precondition_makes_the_claim_inconclusive_whatever_the_tests_say():
    req = {"metric": "m", "cells": "all", "at_most": 0.5, "says": "every cell fits"}
    v = rules.judge(_claim([HOLDS], [req]), {"m": GOOD})
    assert v.status == rules.INCONCLUSIVE
    assert "every cell fits (needs <= 0.5) not met: y 0.91" in v.reason


def test_a_requirement_reads_cell_means():
    r = Requirement(metric="m", cells={"pe": "x"}, at_least=0.95)
    assert rules.check_requirement(r, samples({"x": [0.96, 0.99]})) is None
    assert "x 0.9" in (rules.check_requirement(r, samples({"x": [0.9, 0.9]})) or "")


def test_intervals_are_finite_numbers():
    r = rules.run_test(make("better", sesoi=0.1), samples({"x": [0.1, 0.2], "y": [0.5, 0.7]}),
                       LOWER, 1)  # fmt: skip
    assert math.isfinite(r.low) and math.isfinite(r.high) and r.low < r.effect < r.high

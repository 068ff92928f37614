"""The report's statistics against answers known in advance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from bench.report import stats
from bench.report.analysis import pareto_front


def test_a_known_difference_is_covered_by_the_ci_and_called_significant():
    rng = np.random.default_rng(1)
    a = 2.0 + rng.normal(0, 0.1, 20)
    b = 2.5 + rng.normal(0, 0.1, 20)
    (c,) = stats.adjust([stats.compare("norm", "pre", a, "post", b)])
    assert c.lo < -0.5 < c.hi
    assert c.diff == pytest.approx(a.mean() - b.mean())
    assert c.verdict == stats.SIGNIFICANT
    assert c.p_adj < 1e-6
    assert c.hedges_g < -3  # a large standardized effect


def test_identical_noisy_groups_are_inconclusive_never_significant():
    # sd 0.085 per side: a zero difference below the noise, and TOST cannot show ±0.02
    x = [2.0, 2.1, 1.9, 2.05]
    (c,) = stats.adjust([stats.compare("pos", "rope", x, "alibi", list(x))])
    assert c.diff == 0
    assert c.p == pytest.approx(1.0)
    assert c.lo <= 0 <= c.hi
    assert c.verdict == stats.INCONCLUSIVE and not c.equivalent
    assert "below the seed noise floor" in c.reason


def test_identical_tight_groups_are_equivalent_within_the_margin():
    # sd 0.001 per side, identical: TOST shows |difference| < EQUIVALENCE_MARGIN
    x = [2.000, 2.001, 1.999, 2.0005]
    (c,) = stats.adjust([stats.compare("pos", "rope", x, "alibi", list(x))])
    assert c.verdict == stats.NOT_SIGNIFICANT and c.equivalent
    assert c.p_tost_adj < stats.ALPHA
    assert f"±{stats.EQUIVALENCE_MARGIN:g}" in c.reason


def test_tost_rejects_equivalence_when_the_difference_is_near_the_margin():
    a = np.array([2.000, 2.001, 1.999, 2.0005])
    assert stats.tost_p(a, a + 0.03) > 0.5  # 0.03 apart: outside ±0.02
    assert stats.tost_p(a, a + 0.005) < 0.01  # 0.005 apart, tiny noise: inside
    # each one-sided test: H0 difference <= -margin / >= +margin, Welch
    lower = sps.ttest_ind(a + 0.02, a + 0.005, equal_var=False, alternative="greater").pvalue
    upper = sps.ttest_ind(a - 0.02, a + 0.005, equal_var=False, alternative="less").pvalue
    assert stats.tost_p(a, a + 0.005) == pytest.approx(max(lower, upper))


def test_clearly_separated_groups_with_three_runs_are_significant():
    (c,) = stats.adjust(
        [stats.compare("norm", "pre", [2.0, 2.01, 1.99], "post", [2.5, 2.52, 2.49])]
    )
    assert c.verdict == stats.SIGNIFICANT and c.n_a == c.n_b == 3


def test_two_runs_per_side_give_no_significance_verdict():
    (c,) = stats.adjust([stats.compare("norm", "pre", [2.0, 2.01], "post", [2.5, 2.51])])
    assert c.verdict == stats.INCONCLUSIVE
    assert c.p is None and c.p_adj is None
    assert "too few runs (2 vs 2" in c.reason
    assert c.lo is not None  # the interval is still shown


def test_groups_from_one_distribution_are_never_significant_or_equivalent():
    rng = np.random.default_rng(7)
    a, b = rng.normal(0, 1, 8), rng.normal(0, 1, 8)
    (c,) = stats.adjust([stats.compare("pos", "a", a, "b", b)])
    assert c.verdict in (stats.NOT_SIGNIFICANT, stats.INCONCLUSIVE) and not c.equivalent
    assert c.lo < 0 < c.hi


def test_one_seed_is_too_few_runs():
    c = stats.compare("norm", "pre", [2.0], "post", [2.3, 2.31])
    (c,) = stats.adjust([c])
    assert c.verdict == stats.INCONCLUSIVE and "too few runs" in c.reason
    assert c.lo is None and c.hi is None and c.p is None and c.p_adj is None
    assert c.diff == pytest.approx(2.0 - 2.305)  # the point difference is still shown


def test_runs_without_variation_cannot_be_tested():
    (c,) = stats.adjust([stats.compare("norm", "pre", [1.0] * 3, "post", [2.0] * 3)])
    assert c.verdict == stats.INCONCLUSIVE and "no seed variation" in c.reason
    assert c.p is None


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> max(0.06, 0.04)=0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []


def test_adjust_uses_holm_over_the_testable_comparisons_only():
    comps = [
        stats.Comparison("x", "a", "b", 3, 3, 1.0, 1.1, -0.1, -0.2, 0.0, -1.0, p, p_tost=0.9)
        for p in (0.01, 0.04, 0.03, 0.005)
    ]
    comps.append(stats.compare("y", "a", [1.0], "b", [2.0]))  # too few runs: not in the family
    out = stats.adjust(comps)
    assert [c.p_adj for c in out[:4]] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [c.verdict for c in out[:4]] == [
        stats.SIGNIFICANT, stats.NOT_SIGNIFICANT, stats.NOT_SIGNIFICANT, stats.SIGNIFICANT,
    ]  # fmt: skip
    assert out[4].verdict == stats.INCONCLUSIVE and out[4].p_adj is None


def test_hedges_g_matches_a_hand_computed_value():
    # pooled sd 1, difference -1, correction 1 - 3 / (4 * 6 - 9) = 0.8
    assert stats.hedges_g(np.array([1.0, 2.0, 3.0]), np.array([2.0, 3.0, 4.0])) == pytest.approx(
        -0.8
    )


def test_mean_ci_needs_two_values_and_brackets_the_mean():
    assert stats.bootstrap_mean_ci([2.0]).lo is None
    assert stats.bootstrap_mean_ci([]).mean is None
    e = stats.bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0])
    assert e.n == 4 and e.mean == 2.5
    assert 1.0 <= e.lo < 2.5 < e.hi <= 4.0


def test_bootstrap_is_deterministic_for_a_seed():
    x = [1.0, 1.5, 2.2, 2.0]
    assert stats.bootstrap_mean_ci(x, seed=3) == stats.bootstrap_mean_ci(x, seed=3)


def test_pareto_front_keeps_points_no_other_beats_on_both_axes():
    quality = [2.0, 2.3, 2.1, 2.4]  # lower is better
    speed = [100.0, 200.0, 90.0, 150.0]  # higher is better
    assert pareto_front(quality, speed) == [0, 1]
    assert pareto_front([0.9, 0.8], [1.0, 2.0], minimize=False) == [0, 1]

"""Trend verdicts of a size ladder: the gap between two cells grows, shrinks, stays, flips
with size, or the rungs do not say; each outcome reached on constructed ladders."""

from __future__ import annotations

import math

import numpy as np
import pytest
from report_helpers import Cell, make_sweep
from scipy.stats import linregress
from scipy.stats import t as t_dist

from bench.report import build_report
from bench.report.analysis import cell_summaries, comparisons
from bench.report.collect import load_sweep
from bench.report.findings import findings
from bench.report.scaling import FLIPS, GROWS, INCONCLUSIVE, SHRINKS, STAYS, trend

SIZES = (1e5, 4e5, 1.6e6, 6.4e6)  # four rungs, a factor 4 apart
NOISE = (-0.01, 0.0, 0.01)  # three seeds a side at every rung, sd 0.01


def ladder(gap_at, base=3.0, sizes=SIZES, noise=NOISE):
    """Runs of cells a and b: b's loss falls with size, a's is b's plus ``gap_at(size)``."""
    b = [(n, base - 0.3 * math.log10(n) + e) for n in sizes for e in noise]
    a = [(n, base - 0.3 * math.log10(n) + gap_at(n) + e) for n in sizes for e in reversed(noise)]
    return a, b


def test_a_gap_that_widens_with_size_grows():
    a, b = ladder(
        lambda n: 0.05 * math.log10(n / 1e5)
    )  # 0 at the smallest rung, +0.09 at the largest
    t = trend(a, b)
    assert t.verdict == GROWS, t.reason
    assert t.slope == pytest.approx(0.05, abs=1e-9)


def test_a_gap_that_closes_with_size_shrinks():
    a, b = ladder(lambda n: 0.2 - 0.05 * math.log10(n / 1e5))
    assert trend(a, b).verdict == SHRINKS


def test_a_better_cell_that_becomes_worse_flips():
    a, b = ladder(lambda n: -0.1 + 0.12 * math.log10(n / 1e5))  # -0.1 at 100k, +0.09 at 6.4M
    t = trend(a, b)
    assert t.verdict == FLIPS, t.reason
    assert t.gaps[0].high < 0 < t.gaps[-1].low


def test_a_constant_gap_stays():
    a, b = ladder(lambda n: 0.1)
    t = trend(a, b)
    assert t.verdict == STAYS and t.low is not None and -0.02 < t.low < t.high < 0.02


def test_noisy_rungs_support_no_trend():
    noise = (-0.2, 0.0, 0.2)
    a, b = ladder(lambda n: 0.1, noise=noise)
    assert trend(a, b).verdict == INCONCLUSIVE


def test_one_rung_is_no_ladder():
    a, b = ladder(lambda n: 0.1, sizes=(1e5,))
    t = trend(a, b)
    assert t.verdict == INCONCLUSIVE and "a trend needs two or more" in t.reason


def test_slope_and_extrapolation_agree_with_two_separate_line_fits():
    rng = np.random.default_rng(0)
    noise = tuple(rng.normal(0, 0.02, 3))
    a, b = ladder(lambda n: 0.03 + 0.04 * math.log10(n / 1e5), noise=noise)
    t = trend(a, b)
    # The interaction model is one straight line per side with a pooled residual variance:
    # the gap's slope is the difference of the two sides' slopes.
    fits = [linregress(np.log10([p for p, _ in side]), [v for _, v in side]) for side in (a, b)]
    sse = sum(
        float(np.sum((np.array([v for _, v in side]) - (f.intercept + f.slope * np.log10([p for p, _ in side]))) ** 2))
        for f, side in zip(fits, (a, b), strict=True)
    )  # fmt: skip
    df = len(a) + len(b) - 4
    sxx = [
        float(np.sum((np.log10([p for p, _ in side]) - np.log10([p for p, _ in side]).mean()) ** 2))
        for side in (a, b)
    ]
    se = math.sqrt(sse / df * (1 / sxx[0] + 1 / sxx[1]))
    half = t_dist.ppf(0.975, df) * se
    slope = fits[0].slope - fits[1].slope
    assert (t.slope, t.low, t.high) == pytest.approx((slope, slope - half, slope + half), rel=1e-9)
    at = t.gap_at(1e9)
    gap = (fits[0].intercept - fits[1].intercept) + 9 * slope
    assert at is not None and at[0] == pytest.approx(gap, rel=1e-9)
    assert at[1] < gap < at[2]


# ----------------------------------------------------------------------------- in a report

RUNGS = {"16": 10_000, "32": 40_000, "64": 160_000}


def ladder_sweep(tmp_path, gap_by_rung, **scale):
    """pre and post at three widths, three seed runs each; post's loss is pre's + the gap."""
    cells = []
    for (width, params), gap in zip(RUNGS.items(), gap_by_rung, strict=True):
        base = 1.0 - 0.1 * math.log10(params / 1e4)
        # post has no final norm: a few parameters fewer at the same rung
        for placement, shift, fewer in (("pre", 0.0, 0), ("post", gap, 2 * int(width))):
            cells.append(Cell({"norm_placement": placement, "d_model": width}, params=params - fewer,
                              seeds=[base + shift + e for e in (-0.01, 0.0, 0.01)],
                              tune=[(3e-3, base + shift)], chance=4.0))  # fmt: skip
    scale = {"ladder": {"model.d_model": [int(w) for w in RUNGS]}, **scale}
    return make_sweep(tmp_path, cells, extra_spec={"scale": scale})


def _findings(sweep):
    data = load_sweep(sweep)
    summaries = cell_summaries(data)
    return data, findings(data, summaries, comparisons(data, summaries))


def test_a_ladder_report_judges_each_rung_and_the_trend_across_them(tmp_path):
    data, found = _findings(
        ladder_sweep(tmp_path, [0.0, 0.1, 0.2])
    )  # post falls behind as it grows
    assert data.ladder == ["d_model"]
    texts = [f.text for f in found]
    trend_lines = [t for t in texts if "as the model grows" in t]
    assert len(trend_lines) == 1 and ": grows, " in trend_lines[0], trend_lines
    assert "norm_placement: pre minus post" in trend_lines[0]
    # each rung has its own best-cell finding; no comparison pits one width against another
    assert [t.split(":")[0] for t in texts if t.startswith("At ")][:3] == [
        "At d_model=16", "At d_model=32", "At d_model=64"]  # fmt: skip
    assert not any(t.startswith("d_model:") for t in texts)


def test_a_ladder_whose_ranking_reverses_is_judged_a_flip(tmp_path):
    _, found = _findings(ladder_sweep(tmp_path, [-0.1, 0.0, 0.1]))
    (line,) = [f for f in found if "as the model grows" in f.text]
    assert line.status == FLIPS, line.text


def test_the_ladder_report_draws_quality_against_size_and_a_plain_sweep_does_not(tmp_path):
    out = build_report(ladder_sweep(tmp_path / "a", [0.0, 0.1, 0.2]), tmp_path / "ra")
    assert (out / "figures" / "scaling.png").is_file()
    assert "Quality against model size" in (out / "report.md").read_text()
    plain = make_sweep(tmp_path / "b", [Cell({"norm_placement": p}, seeds=[1.0, 1.1, 0.9],
                                             tune=[(3e-3, 1.0)]) for p in ("pre", "post")])  # fmt: skip
    out = build_report(plain, tmp_path / "rb")
    assert not (out / "figures" / "scaling.png").exists()
    assert "model size" not in (out / "report.md").read_text()


def test_an_extrapolation_comes_with_its_interval_and_its_assumption(tmp_path):
    _, found = _findings(ladder_sweep(tmp_path, [0.0, 0.1, 0.2], extrapolate_to=1e9))
    (line,) = [f.text for f in found if "as the model grows" in f.text]
    tail = line.split("Extrapolated to 1e+09 parameters: ")[1]
    gap, interval = tail.split(" [", 1)
    low, high = (float(x) for x in interval.split("]")[0].split(", "))
    # pre minus post falls by 0.1 a rung (4x parameters): about -0.83 at 1e9
    assert low < float(gap) < high < -0.5
    assert "assuming the gap stays linear in log parameters" in line

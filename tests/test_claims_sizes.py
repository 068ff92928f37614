"""A claim at two or more model sizes: each size judged alone, the verdict over sizes, and
whether each test's effect grows, shrinks, stays or flips as the model grows."""

from __future__ import annotations

import math

import pytest
from scipy import stats as sps

from bench.claims import rules
from bench.claims.metrics import Sample, Samples
from bench.claims.sizes import combine, judge_sizes, rung_sizes
from bench.claims.spec import ClaimSpec
from bench.report.scaling import FLIPS, GROWS, INCONCLUSIVE, SHRINKS, STAYS

SIZES = {("32",): 20_000.0, ("64",): 70_000.0, ("128",): 270_000.0}
LADDER = ["d_model"]
NOISE = (-0.01, -0.005, 0.005, 0.01)  # mean 0


def ladder_samples(a_by_size: list[float], b_by_size: list[float]) -> Samples:
    """Cells pe=x (a) and pe=y (b) at widths 32, 64, 128; four runs a cell around each mean."""
    out = Samples("m")
    for width, ma, mb in zip(("32", "64", "128"), a_by_size, b_by_size, strict=True):
        for pe, m in (("x", ma), ("y", mb)):
            for i, e in enumerate(NOISE):
                out.values.append(Sample(f"pe={pe},d_model={width}", {"pe": pe, "d_model": width},
                                         i, m + e))  # fmt: skip
    return out


def claim(**test) -> ClaimSpec:
    better = {"kind": "better", "metric": "m", "a": {"pe": "x"}, "b": {"pe": "y"},
              "sesoi": 0.05, "why": "constructed", **test}  # fmt: skip
    return ClaimSpec(
        id="c", title="t", citation="c", url="u", statement="s", scale="s", caveat="c",
        sweep={"compare": {"model.pe": ["x", "y"]},
               "scale": {"ladder": {"model.d_model": [32, 64, 128]}}},
        metrics={"m": {"key": "val/loss"}}, tests=[better],
        requires=[{"metric": "m", "at_most": 10.0}], no_control="none",
    )  # fmt: skip


def judged(a_means: list[float], b_means: list[float], **test):
    return judge_sizes(claim(**test), {"m": ladder_samples(a_means, b_means)}, LADDER, SIZES)


def test_each_size_is_judged_on_its_own_runs_with_the_claims_rule():
    # x better than y by 0.2 at 32 and 64, by nothing at 128
    verdict, sizes = judged([1.0, 0.9, 0.8], [1.2, 1.1, 0.8])
    assert [r.name for r in sizes.rungs] == ["d_model=32", "d_model=64", "d_model=128"]
    assert [r.verdict.status for r in sizes.rungs] == [
        rules.CONSISTENT, rules.CONSISTENT, rules.NOT_REPRODUCED]  # fmt: skip
    # each rung's test reads four runs a cell, not the twelve of the whole ladder
    assert sizes.rungs[0].verdict.tests[0].sizes == {"pe=y": 4, "pe=x": 4}
    assert verdict.status == rules.INCONCLUSIVE
    assert verdict.reason == (
        "the sizes disagree: consistent with the paper at this scale at d_model=32; "
        "consistent with the paper at this scale at d_model=64; "
        "not reproduced at this scale at d_model=128"
    )


def test_sizes_that_agree_give_their_verdict():
    verdict, _ = judged([1.0, 0.9, 0.8], [1.2, 1.1, 1.0])
    assert verdict.status == rules.CONSISTENT
    assert verdict.reason.startswith("the same at every size (3 rungs)")
    verdict, _ = judged([1.0, 0.9, 0.8], [1.0, 0.9, 0.8])
    assert verdict.status == rules.NOT_REPRODUCED


@pytest.mark.parametrize(
    ("a", "b", "trend"),
    [
        ([1.0, 0.9, 0.8], [1.1, 1.1, 1.1], GROWS),  # the gap b - a: 0.1, 0.2, 0.3
        ([1.0, 0.9, 0.8], [1.3, 1.1, 0.9], SHRINKS),  # 0.3, 0.2, 0.1
        ([1.0, 0.9, 0.8], [1.2, 1.1, 1.0], STAYS),  # 0.2 at every size
        ([1.0, 0.9, 0.8], [1.2, 0.9, 0.6], FLIPS),  # +0.2, 0, -0.2
    ],
)
def test_a_tests_effect_grows_shrinks_stays_or_flips_with_size(a, b, trend):
    _, sizes = judged(a, b)
    (t,) = sizes.trends
    assert t.verdict == trend, t.reason


def test_noisy_sizes_support_no_trend():
    out = Samples("m")
    for width, spread in (("32", 0.5), ("64", 0.5), ("128", 0.5)):
        for pe, m in (("x", 1.0), ("y", 1.1)):
            for i, e in enumerate((-spread, 0.0, spread)):
                out.values.append(Sample(f"pe={pe},d_model={width}", {"pe": pe, "d_model": width},
                                         i, m + e * (1 if pe == "x" else -1)))  # fmt: skip
    _, sizes = judge_sizes(claim(), {"m": out}, LADDER, SIZES)
    assert sizes.trends[0].verdict == INCONCLUSIVE


def test_the_slope_is_an_ordinary_least_squares_fit_of_the_effects_with_a_welch_interval():
    a, b = [1.0, 0.9, 0.8], [1.1, 1.1, 1.1]
    _, sizes = judged(a, b)
    (t,) = sizes.trends
    xs = [math.log10(p) for p in SIZES.values()]
    gaps = [y - x for x, y in zip(a, b, strict=True)]  # the noise is the same in every cell
    fit = sps.linregress(xs, gaps)
    assert t.slope == pytest.approx(fit.slope, rel=1e-9)
    # every cell's four runs have the same variance s2: the slope, sum_r c_r * gap_r with
    # c_r = (x_r - mean x) / Sxx, has variance sum over cells of c_r^2 s2 / 4, and
    # Welch-Satterthwaite degrees of freedom over the six cells
    s2 = sps.tstd(NOISE) ** 2
    mx = sum(xs) / 3
    sxx = sum((x - mx) ** 2 for x in xs)
    parts = [((x - mx) / sxx) ** 2 * s2 / 4 for x in xs for _ in "ab"]
    df = sum(parts) ** 2 / sum(p**2 / 3 for p in parts)
    half = sps.t.ppf(0.975, df) * math.sqrt(sum(parts))
    assert (t.low, t.high) == pytest.approx((fit.slope - half, fit.slope + half), rel=1e-6)


def test_a_one_cell_tests_trend_is_measured_from_its_threshold():
    # at_most 1.0: x's mean sits 0.0, 0.1, 0.2 below the threshold as it grows
    _, sizes = judged(
        [1.0, 0.9, 0.8], [5.0, 5.0, 5.0], kind="at_most", value=1.0, b=None, sesoi=None
    )
    (t,) = sizes.trends
    assert [round(e, 6) for _, e, _, _ in t.effects] == [0.0, -0.1, -0.2]
    assert t.verdict == GROWS  # away from the threshold, in the paper's direction


def test_one_size_with_runs_is_no_trend():
    samples = ladder_samples([1.0, 0.9, 0.8], [1.2, 1.1, 1.0])
    samples.values = [s for s in samples.values if s.axes["d_model"] == "32"]
    _, sizes = judge_sizes(claim(), {"m": samples}, LADDER, SIZES)
    assert sizes.trends[0].verdict == INCONCLUSIVE
    assert "a trend needs two" in sizes.trends[0].reason


def test_a_sizes_parameters_are_the_geometric_mean_of_its_runs():
    rows = [{"d_model": 32, "params": 1000}, {"d_model": 32, "params": 100_000},
            {"d_model": 64, "params": 5000}, {"d_model": 64, "params": None}]  # fmt: skip
    assert rung_sizes(rows, LADDER) == {
        ("32",): pytest.approx(10_000),
        ("64",): pytest.approx(5000),
    }


def test_no_rung_with_runs_is_inconclusive():
    assert combine([]).status == rules.INCONCLUSIVE


@pytest.mark.slow
def test_real_tiny_runs_of_a_claim_on_a_ladder_are_judged_at_each_size(tmp_path):
    """The constructed claim of the pre-registration test (lr 3e-2 trains, 1e-6 does not) at
    widths 16 and 32: each width is judged, and the report shows the trend of the effect.
    A second claim that judges the same runs (``sweep_of``) is judged at each width too,
    as its owner is, though its own file names no ladder."""
    import copy
    import json
    import subprocess
    import sys

    import yaml
    from test_claims_prereg import CLAIM

    spec = copy.deepcopy(CLAIM)
    spec["sweep"]["scale"] = {"ladder": {"model.d_model": [16, 32]}}
    path = tmp_path / "trains.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    sharer = {k: v for k, v in copy.deepcopy(CLAIM).items() if k not in ("sweep", "budgets")}
    # its own rule on the same cells: a gain of half a nat (the owner's SESOI is 0.05)
    sharer.update(sweep_of="trains", title="Training gains at least half a nat",
                  tests=[{"kind": "better", "metric": "loss", "a": {"train.lr": 0.03},
                          "b": {"train.lr": 1.0e-6}, "sesoi": 0.5, "why": "constructed"}])  # fmt: skip
    shared = tmp_path / "untrained.yaml"
    shared.write_text(yaml.safe_dump(sharer, sort_keys=False))
    cmd = [sys.executable, "-m", "bench", "reproduce", str(path), str(shared), "--budget",
           "quick", "--workers", "2", "--runs", str(tmp_path / "runs"), "--out",
           str(tmp_path / "out")]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    md, untrained = (tmp_path / "out" / "report.md").read_text().split('<a id="untrained">')
    assert "## Training gains at least half a nat: consistent with the paper at this scale" in (
        untrained
    )
    assert "The same at every size (2 rungs)" in untrained
    shared_rows = [line for line in untrained.splitlines() if line.startswith("| d_model=")]
    assert [r.split(" | ")[0] for r in shared_rows] == ["| d_model=16", "| d_model=32"]
    (shared_trend,) = [line for line in untrained.splitlines() if "d_model=16: +" in line]
    assert "per tenfold parameters" in shared_trend
    assert (
        "## A trained model beats an untrained one: consistent with the paper at this scale" in md
    )
    assert "The same at every size (2 rungs)" in md
    rows = [line for line in md.splitlines() if line.startswith("| d_model=")]
    assert [r.split(" | ")[0] for r in rows] == ["| d_model=16", "| d_model=32"]
    assert all("consistent with the paper at this scale" in r for r in rows)
    (trend,) = [
        line for line in md.splitlines() if line.startswith("| lr") or "d_model=16: +" in line
    ]
    assert any(word in trend for word in ("**grows**", "**shrinks**", "**stays**", "**flips**",
                                          "**inconclusive**"))  # fmt: skip
    assert "at every size: model.d_model=16; model.d_model=32" in md
    verdicts = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    assert verdicts["claims"]["trains"]["status"] == "consistent with the paper at this scale"
    assert verdicts["claims"]["untrained"]["status"] == verdicts["claims"]["trains"]["status"]
    assert (tmp_path / "runs" / "trains" / "claim-untrained.json").is_file()


def test_a_ladder_claims_axis_figure_draws_each_size_apart_never_pooled():
    from types import SimpleNamespace

    from bench.claims.figures import axis
    from bench.claims.spec import FigureSpec, MetricSpec

    samples = Samples("m")
    for width, shift in (
        ("128", 0.5),
        ("32", 0.0),
    ):  # the larger rung first: order comes from sizes
        for pe in ("x", "y"):
            for lr in ("0.001", "0.01"):
                axes = {"pe": pe, "train.lr": lr, "d_model": width}
                samples.values.append(Sample(f"pe={pe},lr={lr},d_model={width}", axes, 1, shift))
    fig = axis(FigureSpec(kind="axis", metric="m", x="train.lr", by="pe"), samples,
               MetricSpec(key="val/loss"), SimpleNamespace(ladder=["d_model"]))  # fmt: skip
    lines = fig.axes[0].get_lines()
    assert [line.get_label() for line in lines] == [
        "pe=x, d_model=32",
        "pe=x, d_model=128",
        "pe=y, d_model=32",
        "pe=y, d_model=128",
    ]
    assert [list(line.get_ydata()) for line in lines] == [[0.0, 0.0], [0.5, 0.5]] * 2
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    assert lines[0].get_linestyle() != lines[1].get_linestyle()


def test_a_ladder_claims_cells_figure_has_a_panel_per_size_smallest_first():
    from types import SimpleNamespace

    from bench.claims.figures import cells
    from bench.claims.spec import FigureSpec, MetricSpec

    fig = cells(FigureSpec(kind="cells", metric="m"), ladder_samples([1.0, 1.1, 1.2], [2.0] * 3),
                MetricSpec(key="val/loss"), SimpleNamespace(ladder=["d_model"]))  # fmt: skip
    panels = fig.axes
    assert [ax.get_title() for ax in panels] == ["d_model=32", "d_model=64", "d_model=128"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["x", "y"]
    means = [
        float(line.get_ydata()[0]) for line in panels[2].get_lines() if line.get_marker() == "o"
    ]
    assert means == pytest.approx([1.2, 2.0])  # the largest size's cells, in its own panel

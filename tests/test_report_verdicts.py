"""What the report is allowed to claim, on constructed sweeps with known truth
(real Optuna journal storages; run directories written by hand in the formats
runs write, with the summary.json ``baseline``/``learning`` keys of issue 9)."""

from __future__ import annotations

import math
import re

import numpy as np
import optuna
import pytest
from report_helpers import GRID, Cell, make_sweep

from bench.report import analysis, build_report, learning, stats, tuning
from bench.report.analysis import cell_summaries, comparisons
from bench.report.collect import load_sweep
from bench.report.figures import (
    learning_curves,
    length_generalization,
    lr_sensitivity,
    pareto,
    quality_by_cell,
)
from bench.report.findings import findings

optuna.logging.set_verbosity(optuna.logging.WARNING)
CHANCE = 2.48  # ln 12


def _tune(center: float, base: float) -> list[tuple[float, float]]:
    """Five grid points with a clear optimum at lr 10**center."""
    return [(lr, base + 0.1 * (math.log10(lr) - center) ** 2 + 0.05) for lr in GRID]


def _analyse(sweep):
    data = load_sweep(sweep)
    summaries = cell_summaries(data)
    comps = comparisons(data, summaries)
    return data, summaries, comps, findings(data, summaries, comps)


def test_the_same_model_under_two_names_is_never_a_winner(tmp_path):
    same = [1.00, 1.02, 0.98]
    cells = [Cell({"norm_placement": v}, seeds=list(same), tune=_tune(-2.5, 1.0), chance=CHANCE,
                  learning="learned") for v in ("pre", "pre_copy")]  # fmt: skip
    _data, _summaries, comps, found = _analyse(make_sweep(tmp_path, cells))
    (c,) = comps
    assert c.verdict in (stats.NOT_SIGNIFICANT, stats.INCONCLUSIVE)
    texts = " ".join(f.text for f in found)
    assert "beats" not in texts and "Best cell" not in texts


def test_a_difference_whose_worse_side_found_its_best_lr_at_the_range_edge_is_inconclusive(
    tmp_path,
):
    # post's tuning keeps improving up to the highest grid point: its optimum may lie beyond
    cells = [Cell({"norm_placement": "pre"}, seeds=[1.0, 1.01, 0.99], tune=_tune(-2.5, 1.0),
                  chance=CHANCE, learning="learned"),
             Cell({"norm_placement": "post"}, seeds=[1.5, 1.52, 1.49], tune=_tune(0.0, 1.5),
                  chance=CHANCE, learning="learned")]  # fmt: skip
    _, _, comps, found = _analyse(make_sweep(tmp_path, cells))
    assert comps[0].verdict == stats.INCONCLUSIVE
    assert "post may be under-tuned" in comps[0].reason
    text = next(f for f in found if f.text.startswith("norm_placement")).text
    assert "beats" not in text and "widen train.lr's range" in text


def test_clearly_separated_cells_with_three_runs_are_significant(tmp_path):
    cells = [Cell({"norm_placement": "pre"}, seeds=[1.0, 1.01, 0.99], tune=_tune(-2.5, 1.0),
                  chance=CHANCE, learning="learned"),
             Cell({"norm_placement": "post"}, seeds=[1.5, 1.52, 1.49], tune=_tune(-2.5, 1.5),
                  chance=CHANCE, learning="learned")]  # fmt: skip
    _, _, comps, found = _analyse(make_sweep(tmp_path, cells))
    assert comps[0].verdict == stats.SIGNIFICANT
    first = next(f for f in found if f.text.startswith("norm_placement"))
    assert first.status == stats.SIGNIFICANT and "pre beats post" in first.text
    best = next(f for f in found if f.text.startswith("Best cell"))
    assert best.status == stats.SIGNIFICANT


def test_a_confirmed_lead_inside_the_equivalence_margin_names_no_winner(tmp_path):
    # the quickstart's case: both near-perfect, the lead (0.0014) is real and negligible
    cells = [Cell({"norm_placement": "pre"}, seeds=[0.00040, 0.00043, 0.00046],
                  tune=_tune(-2.5, 0.0), chance=CHANCE, learning="learned"),
             Cell({"norm_placement": "post"}, seeds=[0.00180, 0.00186, 0.00192],
                  tune=_tune(-2.5, 0.0), chance=CHANCE, learning="learned")]  # fmt: skip
    _, _, comps, found = _analyse(make_sweep(tmp_path, cells))
    (c,) = comps
    assert c.p_adj is not None and c.p_adj < stats.ALPHA  # the difference test separates them
    assert c.equivalent and c.verdict == stats.NOT_SIGNIFICANT
    texts = " ".join(f.text for f in found)
    assert "beats" not in texts and "Best cell" not in texts
    assert "no meaningful difference" in texts and "too small to matter" in texts
    low = next(f for f in found if f.text.startswith("Lowest"))
    assert low.status == stats.EQUIVALENT and "no meaningful best cell" in low.text
    assert f"equivalence margin ±{stats.EQUIVALENCE_MARGIN:g}" in low.text
    # the two cells the margin is about are both named (no "it" that reads as the runner-up)
    assert "pre and post are within the equivalence margin" in low.text


def test_the_best_cell_must_beat_every_other_cell_in_one_holm_family(tmp_path):
    spread = [-0.02, 0.0, 0.02]
    means = {"1": 1.0, "2": 1.3, "4": 1.31, "8": 1.32}
    cells = [Cell({"n_heads": h}, seeds=[m + d for d in spread], tune=_tune(-2.5, m),
                  chance=CHANCE, learning="learned") for h, m in means.items()]  # fmt: skip
    data, summaries, _comps, found = _analyse(make_sweep(tmp_path, cells))
    best, comps = analysis.versus_best(data, summaries)
    assert best.axes["n_heads"] == "1"
    assert [c.b for c in comps] == ["n_heads=2", "n_heads=4", "n_heads=8"]  # runner-up first
    raw = [stats.welch_p(np.asarray(best.values), np.asarray(s.values)) for s in summaries[1:]]
    assert [c.p_adj for c in comps] == pytest.approx(stats.holm(raw))
    top = next(f for f in found if f.text.startswith("Best cell"))
    assert top.status == stats.SIGNIFICANT and "Holm-corrected over 3 comparisons" in top.text


def test_a_best_cell_not_separated_from_one_other_cell_is_not_named(tmp_path):
    cells = [Cell({"n_heads": "1"}, seeds=[1.0, 1.05, 0.95], tune=_tune(-2.5, 1.0), chance=CHANCE,
                  learning="learned"),
             Cell({"n_heads": "2"}, seeds=[1.03, 1.10, 0.98], tune=_tune(-2.5, 1.03),
                  chance=CHANCE, learning="learned"),
             Cell({"n_heads": "4"}, seeds=[1.5, 1.52, 1.49], tune=_tune(-2.5, 1.5),
                  chance=CHANCE, learning="learned")]  # fmt: skip
    *_, found = _analyse(make_sweep(tmp_path, cells))
    low = next(f for f in found if f.text.startswith("Lowest"))
    assert low.status == stats.INCONCLUSIVE and "against 2, the difference" in low.text
    assert "Best cell" not in " ".join(f.text for f in found)


def test_two_runs_per_side_get_no_significance_verdict(tmp_path):
    cells = [Cell({"norm_placement": "pre"}, seeds=[1.0, 1.01], tune=_tune(-2.5, 1.0)),
             Cell({"norm_placement": "post"}, seeds=[1.5, 1.52], tune=_tune(-2.5, 1.5))]  # fmt: skip
    _, _, comps, found = _analyse(make_sweep(tmp_path, cells))
    assert comps[0].verdict == stats.INCONCLUSIVE and comps[0].p_adj is None
    assert not any(f.status == stats.SIGNIFICANT for f in found)


def test_identical_tight_cells_are_reported_as_no_meaningful_difference(tmp_path):
    seeds = [1.000, 1.001, 0.999, 1.0005]
    cells = [Cell({"pos_encoding": v}, seeds=list(seeds), tune=_tune(-2.5, 1.0), chance=CHANCE,
                  learning="learned") for v in ("rope", "rope2")]  # fmt: skip
    out = build_report(make_sweep(tmp_path, cells), tmp_path / "out")
    md = (out / "report.md").read_text()
    assert "pos_encoding: rope vs rope2: no meaningful difference" in md
    assert f"equivalence margin ±{stats.EQUIVALENCE_MARGIN:g}" in md
    assert "EQUIVALENCE_MARGIN" in md  # the margin constant is named where it is explained


def _no_cell_learned(tmp_path):
    cells = [Cell({"n_heads": h}, seeds=[2.46, 2.47, 2.45 + 0.001 * i], tune=_tune(-2.5, 2.40),
                  chance=CHANCE, learning="did_not_learn", tokens_per_sec=1000.0 * (i + 1))
             for i, h in enumerate(("1", "2", "4", "8"))]  # fmt: skip
    return make_sweep(tmp_path, cells, extra_spec={"base": {
        "task": {"name": "recall", "seq_len": 16}, "tracking": {"mode": "disabled"},
        "train": {"max_steps": 200}}})  # fmt: skip


def test_when_no_cell_learned_the_first_finding_says_so_and_nothing_wins(tmp_path):
    sweep = _no_cell_learned(tmp_path)
    _data, summaries, comps, found = _analyse(sweep)
    assert all(s.learning.status == learning.DID_NOT_LEARN for s in summaries)
    assert found[0].status == stats.INCONCLUSIVE and found[0].text.startswith("No cell learned")
    for hint in ("train.max_steps > 200", "larger model", "easier", "widen train.lr's range"):
        assert hint in found[0].text
    assert all(c.verdict == stats.INCONCLUSIVE for c in comps)
    out = build_report(sweep, tmp_path / "out")
    for page in ("report.md", "index.html"):
        text = (out / page).read_text()
        for claim in ("Best cell", "Fastest", "beats", "Lowest best/val/loss", "has the lowest"):
            assert claim not in text, (page, claim)
        assert not re.search(r"\bwinner\b(?!('|&#39;)s curse)", text)
    assert "| did not learn |" in (out / "report.md").read_text()


def test_a_cell_that_did_not_learn_is_excluded_and_listed(tmp_path):
    cells = [
        Cell(
            {"norm_placement": "pre"}, seeds=[1.0, 1.01, 0.99], tune=_tune(-2.5, 1.0), chance=CHANCE
        ),
        Cell(
            {"norm_placement": "post"},
            seeds=[2.40, 2.41, 2.42],
            tune=[(lr, 2.35 + 0.03 * i) for i, lr in enumerate(GRID)],
            chance=CHANCE,
        ),
    ]  # fmt: skip  (no learning key: judged by the chance margin)
    _data, summaries, comps, found = _analyse(make_sweep(tmp_path, cells))
    post = summaries[1]
    assert post.learning.status == learning.DID_NOT_LEARN and "chance 2.48" in post.learning.reason
    assert summaries[0].learning.status == learning.LEARNED
    (c,) = comps
    assert c.verdict == stats.INCONCLUSIVE and "no post cell learned" in c.reason
    assert any(f.text.startswith("post did not learn") for f in found)


def test_old_sweeps_without_baselines_say_unknown(tmp_path):
    cells = [Cell({"norm_placement": v}, seeds=[1.0 + i, 1.01 + i, 0.99 + i], tune=_tune(-2.5, 1.0))
             for i, v in enumerate(("pre", "post"))]  # fmt: skip
    _data, summaries, comps, found = _analyse(make_sweep(tmp_path, cells))
    assert {s.learning.status for s in summaries} == {learning.UNKNOWN}
    assert any("unknown" in f.text for f in found)
    assert comps[0].verdict == stats.SIGNIFICANT  # unknown cells still enter comparisons


def test_a_best_lr_at_the_edge_of_the_range_is_flagged(tmp_path):
    cells = [Cell({"norm_placement": "pre"}, seeds=[1.0, 1.01, 0.99], tune=_tune(-1.0, 1.0)),
             Cell({"norm_placement": "post"}, seeds=[1.2, 1.21, 1.19], tune=_tune(-2.5, 1.2))]  # fmt: skip
    data, summaries, _, found = _analyse(make_sweep(tmp_path, cells))
    pre, post = summaries
    assert pre.tune_best_lr == pytest.approx(0.1)
    assert "widen train.lr's range" in tuning.edge_lr(data, pre.cell, pre.tune_best_lr)
    assert tuning.edge_lr(data, post.cell, post.tune_best_lr) is None  # the middle grid point
    # between grid points but within one log-grid step (0.75 decades) of the lower bound 1e-4
    assert "within one log-grid step of the lower bound" in tuning.edge_lr(data, post.cell, 3e-4)
    assert any(f.text.startswith("pre: best lr 0.1 is the highest") for f in found)


def test_several_pruned_trials_at_the_high_end_are_counted(tmp_path):
    tune = [p for p in _tune(-2.5, 1.0) if p[0] < 0.05]
    cells = [Cell({"norm_placement": "pre"}, seeds=[1.0, 1.01, 0.99], tune=tune,
                  pruned=[0.06, 0.1])]  # fmt: skip
    data = load_sweep(make_sweep(tmp_path, cells))
    assert tuning.pruned_at_one_end(data, "norm_placement=pre") == (
        "all 2 pruned trials had the highest learning rates (≥ 0.06; the highest that finished: "
        "0.018): the pruner, not the tuning, decided that end"
    )


def test_pruned_trials_all_at_the_low_end_are_flagged_and_listed(tmp_path):
    tune = [p for p in _tune(-2.0, 1.0) if p[0] > 2e-4]
    cells = [Cell({"norm_placement": "pre"}, seeds=[1.0, 1.01, 0.99], tune=tune, pruned=[1e-4]),
             Cell({"norm_placement": "post"}, seeds=[1.2, 1.21, 1.19], tune=_tune(-2.0, 1.2),
                  pruned=[3e-3])]  # fmt: skip
    sweep = make_sweep(tmp_path, cells)
    data = load_sweep(sweep)
    assert tuning.pruned_at_one_end(data, "norm_placement=pre") == (
        "its one pruned trial had the lowest learning rate (0.0001; the lowest that finished: "
        "0.00056): the pruner, not the tuning, decided that end"
    )
    assert tuning.pruned_at_one_end(data, "norm_placement=post") is None  # pruned mid-range
    out = build_report(sweep, tmp_path / "out")
    md = (out / "report.md").read_text()
    section = md.split("### Pruned tuning trials")[1].split("## Figures")[0]
    assert "| norm_placement=pre | 4 | 0.0001 | 20 | pruned at step 20: val/loss 2.6" in section
    assert "norm_placement=post" in section
    missing = md.split("## Missing and failed")[1].split("## ")[0]
    assert "pruned" not in missing, missing  # stopped on purpose is not missing


def test_the_same_loss_at_different_learning_rates_near_chance_is_collapse(tmp_path):
    flat = [(lr, 2.2115 + (1e-4 if lr > 1e-2 else 0.0)) for lr in GRID]
    cells = [Cell({"norm_placement": "pre"}, seeds=[1.0, 1.01, 0.99], tune=_tune(-2.5, 1.0),
                  chance=CHANCE),
             Cell({"norm_placement": "post"}, seeds=[2.2115, 2.2116, 2.2117], tune=flat,
                  chance=CHANCE)]  # fmt: skip
    _data, summaries, comps, found = _analyse(make_sweep(tmp_path, cells))
    pre, post = summaries
    assert post.learning.collapse is not None and "chance 2.48" in post.learning.collapse
    assert post.learning.status == learning.COLLAPSED and post.learning.excluded
    assert pre.learning.collapse is None
    assert any("collapsed predictions" in f.text and f.text.startswith("post") for f in found)
    assert comps[0].verdict == stats.INCONCLUSIVE


def test_equal_losses_far_from_chance_are_not_collapse():
    pts = [(1e-3, 0.5), (1e-2, 0.5)]
    assert learning.collapse_evidence(pts, CHANCE, minimize=True) is None
    assert learning.collapse_evidence(pts, None, minimize=True) is None
    assert learning.collapse_evidence([(1e-3, 2.3), (1e-2, 2.3)], CHANCE, True) is not None


def test_best_lr_column_shows_the_lr_the_seed_runs_used(tmp_path):
    cells = [Cell({"norm_placement": "pre"}, seeds=[1.0, 1.01, 0.99], tune=_tune(-2.5, 1.0)),
             Cell({"norm_placement": "post"}, seeds=[1.2, 1.21, 1.19], tune=_tune(-2.5, 1.2))]  # fmt: skip
    sweep = make_sweep(tmp_path, cells)
    data = load_sweep(sweep)
    summaries = cell_summaries(data)
    assert summaries[0].seed_lrs == pytest.approx([GRID[2]] * 3)  # read from config.yaml
    md = (build_report(sweep, tmp_path / "out") / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| pre | 3 |"))
    assert f"| {GRID[2]:.2g} |" in row
    assert "winner's curse" in md and "seed-rerun mean" in md


def _speed(tmp_path, post_tps: float, noise: float = 0.02):
    cells = [Cell({"norm_placement": "pre"}, seeds=[1.0, 1.01, 0.99], tune=_tune(-2.5, 1.0),
                  tokens_per_sec=1000.0, tps_noise=noise),
             Cell({"norm_placement": "post"}, seeds=[1.2, 1.21, 1.19], tune=_tune(-2.5, 1.2),
                  tokens_per_sec=post_tps, tps_noise=noise)]  # fmt: skip
    _, _, _, found = _analyse(make_sweep(tmp_path, cells))
    return next(f for f in found if "tokens/s" in f.text)


@pytest.mark.parametrize("post_tps", [2000.0, 1150.0])
def test_fastest_is_named_when_significantly_more_than_ten_percent_faster(tmp_path, post_tps):
    speed = _speed(tmp_path, post_tps)
    assert speed.text.startswith("Fastest: post") and speed.status == stats.SIGNIFICANT
    assert f"{post_tps / 1000:.2f}x the next" in speed.text
    assert "by more than 10%" in speed.text


def test_a_speed_difference_the_runs_confirm_but_under_ten_percent_names_no_fastest(tmp_path):
    # The quickstart's case: pre/learned and post/learned 5% apart, each run's tokens/s
    # within 0.5%, so the Welch test separates them; a second sweep did not.
    speed = _speed(tmp_path, 1050.0, noise=0.005)
    assert "Fastest" not in speed.text and speed.status == stats.EQUIVALENT
    assert "post and pre are equally fast within ±10% (ratio 1.050, TOST p = " in speed.text


def test_equal_speeds_are_equally_fast(tmp_path):
    speed = _speed(tmp_path, 1005.0)
    assert "no cell is clearly fastest: post and pre are equally fast" in speed.text


def test_speeds_that_overlap_beyond_the_margin_are_not_separated(tmp_path):
    speed = _speed(tmp_path, 1100.0, noise=1.0)  # 10% apart; runs at 1.6-2.0x their base
    assert "Fastest" not in speed.text and speed.status != stats.SIGNIFICANT


def test_a_speed_gap_inside_the_run_noise_is_inconclusive_and_said_in_ratios(tmp_path):
    speed = _speed(tmp_path, 1010.0, noise=1.0)  # 1% apart; runs at 1.6-2.0x their base
    assert speed.status == stats.INCONCLUSIVE
    assert "post against pre: the ratio 1.010 is within the run-to-run noise (sd " in speed.text
    assert "% of tokens/s) and equal speed within ±10% is not shown" in speed.text


def test_too_few_runs_give_no_speed_verdict(tmp_path):
    cells = [Cell({"norm_placement": v}, seeds=[1.0 + i, 1.01 + i], tune=_tune(-2.5, 1.0 + i),
                  tokens_per_sec=1000.0 * (1 + 3 * i)) for i, v in enumerate(("pre", "post"))]  # fmt: skip
    _, _, _, found = _analyse(make_sweep(tmp_path, cells))
    speed = next(f for f in found if "tokens/s" in f.text)
    assert speed.status == stats.INCONCLUSIVE and "too few runs (2 vs 2" in speed.text


def test_length_generalization_is_per_cell_against_chance(tmp_path):
    cells = [Cell({"pos_encoding": "rope"}, seeds=[1.0, 1.01, 0.99], tune=_tune(-2.5, 1.0),
                  chance=CHANCE, learning="learned"),
             Cell({"pos_encoding": "alibi"}, seeds=[1.1, 1.11, 1.09], tune=_tune(-2.5, 1.1),
                  chance=CHANCE, learning="learned")]  # fmt: skip
    _, _, _, found = _analyse(make_sweep(tmp_path, cells))
    lens = [f for f in found if f.text.startswith("Length generalization of")]
    assert [f.text.split(":")[0] for f in lens] == [
        "Length generalization of rope", "Length generalization of alibi"]  # fmt: skip
    assert "4x: loss 1.300 (chance 2.48)" in lens[0].text


def _lines(ax) -> list[str]:
    return [ln.get_label() for ln in ax.get_lines()]


def test_figures_draw_the_chance_line_and_the_search_bounds(tmp_path):
    cells = [Cell({"norm_placement": v}, seeds=[1.0 + i, 1.01 + i, 0.99 + i], tune=_tune(-2.5, 1.0 + i),
                  chance=CHANCE, learning="learned") for i, v in enumerate(("pre", "post"))]  # fmt: skip
    data = load_sweep(make_sweep(tmp_path, cells))
    summaries = cell_summaries(data)
    q = quality_by_cell(data, summaries).axes[0]
    assert any(lab.startswith("chance (2.48)") for lab in _lines(q))
    chance_x = next(ln for ln in q.get_lines() if ln.get_label().startswith("chance"))
    assert np.allclose(chance_x.get_xdata(), CHANCE)  # vertical: quality is on the x axis
    lr = lr_sensitivity(data, summaries).axes[0]
    assert any(lab.startswith("chance") for lab in _lines(lr))
    bounds = [ln.get_xdata()[0] for ln in lr.get_lines() if ln.get_linestyle() == "--"]
    assert min(bounds) == pytest.approx(1e-4) and max(bounds) == pytest.approx(0.1)
    dots = sum(len(c.get_offsets()) for c in lr.collections)
    assert dots == 2 * (5 + 3)  # each dot one run: 5 tuning trials + 3 seed runs per cell
    for ax in learning_curves(data, summaries).axes:
        assert any(lab.startswith("chance") for lab in _lines(ax))
    assert any(lab == "chance" for lab in _lines(length_generalization(data, summaries).axes[0]))
    p = pareto(data, summaries).axes[0]
    assert any(lab.startswith("chance") for lab in _lines(p))
    assert any(lab == "Pareto front" and ln.get_drawstyle().startswith("steps")
               for ln, lab in zip(p.get_lines(), _lines(p), strict=True))  # fmt: skip


def test_report_md_is_markdown_without_html_entities(tmp_path):
    cells = [Cell({"variant": "a<b & c>=d"}, seeds=[1.0, 1.01, 0.99], tune=_tune(-2.5, 1.0)),
             Cell({"variant": "plain"}, seeds=[1.2, 1.21, 1.19], tune=_tune(-2.5, 1.2))]  # fmt: skip
    md = (build_report(make_sweep(tmp_path, cells), tmp_path / "out") / "report.md").read_text()
    assert not re.search(r"&(lt|gt|amp|quot|#\d+);", md)
    assert "p (Holm) < 0.05" in md and "c>=d" in md

"""The report answers first: at most three plain sentences above the findings (what was
compared, what the evidence says, how sure), and every finding's label matches what
it says. Constructed sweeps with known truth (tests/report_helpers.py)."""

from __future__ import annotations

import math
import re

import optuna
from report_helpers import GRID, Cell, make_sweep

from bench.report import build_report, stats
from bench.report.analysis import cell_summaries, comparisons
from bench.report.bottom_line import bottom_line
from bench.report.collect import load_sweep
from bench.report.findings import findings

optuna.logging.set_verbosity(optuna.logging.WARNING)
CHANCE = 2.48


def _tune(base: float) -> list[tuple[float, float]]:
    """Five grid points with a clear optimum inside the range (lr 10**-2.4; not centred,
    so the two ends differ and no cell looks collapsed)."""
    return [(lr, base + 0.1 * (math.log10(lr) + 2.4) ** 2 + 0.05) for lr in GRID]


def _cell(axes: dict[str, str], seeds: list[float], learning: str = "learned") -> Cell:
    return Cell(axes, seeds=seeds, tune=_tune(min(seeds)), chance=CHANCE, learning=learning)


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s]


def _analyse(sweep):
    data = load_sweep(sweep)
    summaries = cell_summaries(data)
    comps = comparisons(data, summaries)
    return data, summaries, comps, findings(data, summaries, comps)


def _two_axes(tmp_path):
    """pre beats post by 0.5 (clear); learned and rope equal within 0.001 (equivalent)."""
    cells = []
    for norm, shift in (("pre", 0.0), ("post", 0.5)):
        for pos, d in (("learned", 0.0), ("rope", 0.001)):
            cells.append(_cell({"norm_placement": norm, "pos_encoding": pos},
                               [1.0 + shift + d, 1.002 + shift + d, 0.998 + shift + d]))  # fmt: skip
    return make_sweep(tmp_path, cells)


def test_the_bottom_line_says_what_was_compared_what_won_and_how_sure_in_three_sentences(
    tmp_path,
):
    data, summaries, comps, _ = _analyse(_two_axes(tmp_path))
    what, evidence, sure = bottom_line(data, summaries, comps)
    assert all(len(_sentences(s)) == 1 for s in (what, evidence, sure))
    assert "norm_placement (pre vs post)" in what and "pos_encoding (learned vs rope)" in what
    assert "copy task" in what and "best/val/loss (lower is better)" in what
    assert "pre beats post (norm_placement)" in evidence
    assert "learned and rope do equally well (pos_encoding)" in evidence
    assert "from 3 seed runs per cell" in sure and "5% error rate" in sure
    assert "2 comparisons" in sure and sure.startswith("Fairly sure")


def test_the_bottom_line_comes_before_the_findings_in_html_and_markdown(tmp_path):
    out = build_report(_two_axes(tmp_path), tmp_path / "out")
    md = (out / "report.md").read_text()
    html = (out / "index.html").read_text()
    assert md.index("## Bottom line") < md.index("## Findings")
    section = md.split("## Bottom line")[1].split("## Findings")[0]
    assert 1 <= len(_sentences(section)) <= 3
    assert "pre beats post" in section
    assert html.index("<h2>Bottom line</h2>") < html.index("<h2>Findings</h2>")
    assert "pre beats post" in html.split("<h2>Bottom line</h2>")[1].split("<h2>Findings")[0]


def test_a_shown_equivalence_is_labelled_equivalent_never_not_significant(tmp_path):
    # both near-perfect: the lead (0.0014) is confirmed by the difference test and negligible
    cells = [_cell({"norm_placement": "pre"}, [0.00040, 0.00043, 0.00046]),
             _cell({"norm_placement": "post"}, [0.00180, 0.00186, 0.00192])]  # fmt: skip
    out = build_report(make_sweep(tmp_path, cells), tmp_path / "out")
    data, summaries, comps, found = _analyse(tmp_path / "synth")
    (c,) = comps
    assert c.equivalent and c.verdict == stats.NOT_SIGNIFICANT  # the decision: no winner
    for f in found:
        says_equivalent = "no meaningful" in f.text or "equivalence margin" in f.text
        if says_equivalent:
            assert f.status == stats.EQUIVALENT, f.text
        if f.status == stats.EQUIVALENT:
            assert says_equivalent, f.text
    assert sum(f.status == stats.EQUIVALENT for f in found) == 2  # the pair and the lowest cell
    md = (out / "report.md").read_text()
    assert "**equivalent**: norm_placement: pre vs post: no meaningful difference" in md
    assert "**not significant**: norm_placement" not in md
    row = next(line for line in md.splitlines() if line.startswith("| norm_placement | pre"))
    assert row.rstrip(" |").endswith("equivalent")  # the comparison table says the same
    line = " ".join(bottom_line(data, summaries, comps))
    assert "pre and post do equally well" in line
    assert "pre scores best but no single cell is best" in line


def test_a_lead_the_runs_do_not_confirm_is_said_in_words_and_leaves_the_answer_open(tmp_path):
    cells = [_cell({"n_heads": "1"}, [1.0, 1.3, 0.8]), _cell({"n_heads": "2"}, [1.2, 0.9, 1.5])]
    data, summaries, comps, _ = _analyse(make_sweep(tmp_path, cells))
    (c,) = comps
    assert stats.label(c) in (stats.NOT_SIGNIFICANT, stats.INCONCLUSIVE)
    _, evidence, sure = bottom_line(data, summaries, comps)
    assert "beats" not in evidence and "best cell is" not in evidence
    assert sure.startswith("Not sure yet") and "none of the 1 comparisons reaches a verdict" in sure


def test_when_no_cell_learned_the_bottom_line_says_nothing_can_be_concluded(tmp_path):
    cells = [_cell({"n_heads": h}, [2.46, 2.47, 2.45], learning="did_not_learn")
             for h in ("1", "2")]  # fmt: skip
    data, summaries, comps, _ = _analyse(make_sweep(tmp_path, cells))
    line = bottom_line(data, summaries, comps)
    assert len(line) == 2 and "No cell learned the task" in line[1]
    assert "beats" not in " ".join(line)


def test_when_some_comparisons_are_open_the_bottom_line_is_partly_sure(tmp_path):
    cells = [_cell({"norm_placement": "pre", "n_heads": "1"}, [1.0, 1.3, 0.8]),
             _cell({"norm_placement": "pre", "n_heads": "2"}, [1.2, 0.9, 1.5]),
             _cell({"norm_placement": "post", "n_heads": "1"}, [2.0, 2.3, 1.8]),
             _cell({"norm_placement": "post", "n_heads": "2"}, [2.2, 1.9, 2.5])]  # fmt: skip
    data, summaries, comps, _ = _analyse(make_sweep(tmp_path, cells))
    _, evidence, sure = bottom_line(data, summaries, comps)
    assert "pre beats post (norm_placement)" in evidence
    assert sure.startswith("Partly sure") and "1 of 2 comparisons stay open" in sure


def test_with_fewer_seed_runs_than_a_test_needs_the_bottom_line_calls_it_a_pilot(tmp_path):
    cells = [_cell({"norm_placement": "pre"}, [1.0, 1.01]),
             _cell({"norm_placement": "post"}, [1.5, 1.52])]  # fmt: skip
    data, summaries, comps, _ = _analyse(make_sweep(tmp_path, cells))
    *_, sure = bottom_line(data, summaries, comps)
    assert sure.startswith("Not sure") and "pilot" in sure and "2 seed runs" in sure


def test_a_clear_best_cell_is_named_only_when_it_beats_every_other_cell(tmp_path):
    cells = [_cell({"n_heads": "1"}, [1.0, 1.01, 0.99]), _cell({"n_heads": "2"}, [1.5, 1.52, 1.49]),
             _cell({"n_heads": "4"}, [2.0, 2.02, 1.98])]  # fmt: skip
    data, summaries, comps, _ = _analyse(make_sweep(tmp_path, cells))
    _, evidence, _ = bottom_line(data, summaries, comps)
    assert "the best cell is 1" in evidence
    assert "1 beats 2 (n_heads)" in evidence and "2 beats 4 (n_heads)" in evidence

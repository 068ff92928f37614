"""``build_report`` on synthetic sweeps (real Optuna journal storages, run directories
in the formats runs write) whose numbers have known answers."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
import warnings
from pathlib import Path

import optuna
import pytest
from report_helpers import Cell, make_sweep, standard_cells

from bench.config import ConfigError
from bench.report import build_report, stats
from bench.report.analysis import cell_summaries, comparisons
from bench.report.collect import load_sweep

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    sweep = make_sweep(root, standard_cells())
    return sweep, build_report(sweep, root / "out")


def test_report_writes_page_markdown_figures_and_the_runs_table(report):
    _, out = report
    assert sorted(p.name for p in out.iterdir()) == [
        "figures",
        "index.html",
        "report.md",
        "runs.csv",
    ]
    figures = sorted(p.stem for p in (out / "figures").glob("*.png"))
    assert {"quality", "lr_sensitivity", "learning_curves", "length_generalization",
            "grad_norm_depth", "hessian", "noise_entropy", "landscape", "pareto"} <= set(figures)  # fmt: skip
    md = (out / "report.md").read_text()
    for name in figures:
        assert f"](figures/{name}.png)" in md
    assert not list(out.parent.glob(".out.*"))  # no temporary directory left behind


def test_runs_csv_has_one_row_per_trial_with_axes_phase_seed_and_metrics(report):
    sweep, out = report
    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    data = load_sweep(sweep)
    assert (
        len(rows) == len(data.rows) == 4 * 5 + 2 + 11 + 1
    )  # tune + diverged/failed + seeds + running
    cols = rows[0].keys()
    for col in ("sweep", "cell", "norm_placement", "pos_encoding", "phase", "trial", "seed",
                "status", "train.lr", "best/val/loss", "val/loss@32", "params",
                "throughput/tokens_per_sec", "throughput/mfu", "hessian/lambda_max"):  # fmt: skip
        assert col in cols
    seeds = [r for r in rows if r["phase"] == "seed" and r["status"] == "completed"]
    assert len(seeds) == 11
    assert all(r["best/val/loss"] and r["seed"] for r in seeds)
    assert {r["status"] for r in rows} == {"completed", "diverged", "failed", "running"}


def test_a_real_difference_is_significant_and_a_null_one_is_not(report):
    sweep, _ = report
    data = load_sweep(sweep)
    comps = {c.axis: c for c in comparisons(data, cell_summaries(data))}
    norm, pos = comps["norm_placement"], comps["pos_encoding"]
    assert norm.verdict == stats.SIGNIFICANT
    assert norm.lo < -0.3 + 0.03 and norm.hi > -0.3 - 0.03  # the built-in 0.3 gap, within noise
    assert norm.n_a == 6 and norm.n_b == 5  # one post/alibi seed run is still going
    assert pos.verdict == stats.NOT_SIGNIFICANT
    assert pos.p_adj >= pos.p  # Holm never lowers a p-value


def test_findings_state_the_winner_with_its_numbers(report):
    _, out = report
    md = (out / "report.md").read_text()
    m = re.search(r"norm_placement: pre beats post by ([0-9.]+) best/val/loss \[([0-9.]+), ([0-9.]+)\] "
                  r"\(p = [0-9.e+-]+, Holm-corrected, 6 vs 5 runs", md)  # fmt: skip
    assert m, md[:2000]
    size, lo, hi = map(float, m.groups())
    assert lo <= size <= hi and abs(size - 0.3) < 0.03
    assert "pos_encoding:" in md and "not significant" in md
    assert "diverged in 1 of 9 finished trials" in md


def test_missing_failed_and_running_runs_are_listed_with_reasons(report):
    _, out = report
    html = (out / "index.html").read_text()
    section = html.split("<h2>Missing and failed</h2>")[1].split("<h2>")[0]
    assert "non-finite train/loss at step 30" in section  # diverged
    assert "CUDA out of memory" in section  # failed
    assert "running" in section  # the seed run still going
    assert "2 of 3 seed runs finished" in section


def test_page_is_self_contained(report):
    _, out = report
    html = (out / "index.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r"(href|src)=\"(https?:)?//", html)
    assert "<script" not in html.lower()
    assert "<style>" in html


def test_cell_table_shows_ci_throughput_and_length_extrapolation(report):
    _, out = report
    md = (out / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| norm_placement"))
    for col in (
        "best/val/loss [95% CI]",
        "loss@2x",
        "loss@4x",
        "tokens/s",
        "MFU",
        "λ_max",
        "diverged",
    ):
        assert col in header
    row = next(line for line in md.splitlines() if line.startswith("| pre | rope"))
    assert re.search(r"\| 2\.0\d+ \[1\.9\d+, 2\.0\d+\] \|", row), row
    assert "| 1.00% |" in row  # MFU 0.01 as a percentage


def test_user_strings_are_escaped_in_html_and_markdown(tmp_path):
    evil = "<script>alert(1)</script>"
    cells = [Cell({"variant": evil}, seeds=[2.0, 2.1], tune=[(1e-3, 2.0)]),
             Cell({"variant": "plain"}, seeds=[2.5, 2.6], tune=[(1e-3, 2.5)])]  # fmt: skip
    sweep = make_sweep(tmp_path, cells, description="<b>bold</b> & <img src=x onerror=alert(2)>")
    out = build_report(sweep, tmp_path / "out")
    html = (out / "index.html").read_text()
    assert evil not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = (out / "report.md").read_text()
    prose, spec_block = md.split("\nSpec:\n")  # the spec is quoted verbatim in a code block
    assert evil not in prose and "\\<script>alert(1)\\</script>" in prose  # CommonMark escapes
    assert "&lt;" not in md and "&amp;" not in md  # Markdown, not HTML-escaped text
    assert spec_block.lstrip().startswith("```yaml")


def test_sweep_without_diagnostics_says_not_measured(tmp_path):
    cells = [Cell({"norm_placement": v}, seeds=[2.0 + i, 2.1 + i], tune=[(1e-3, 2.0 + i)],
                  tokens_per_sec=None, diagnostics=False) for i, v in enumerate(("pre", "post"))]  # fmt: skip
    out = build_report(make_sweep(tmp_path, cells), tmp_path / "out")
    md = (out / "report.md").read_text()
    assert "not measured (no diagnostics/gradients.npz" in md
    assert "not measured (no hessian/" in md
    assert "not measured (no throughput/tokens_per_sec" in md
    assert "Not measured by any run of this sweep, so not shown: tokens/s, MFU, λ_max" in md
    assert not (out / "figures" / "hessian.png").exists()


def test_one_seed_per_cell_is_inconclusive_with_too_few_runs(tmp_path):
    cells = [Cell({"norm_placement": v}, seeds=[2.0 + i], tune=[(1e-3, 2.0 + i)])
             for i, v in enumerate(("pre", "post"))]  # fmt: skip
    out = build_report(make_sweep(tmp_path, cells), tmp_path / "out")
    md = (out / "report.md").read_text()
    assert "norm_placement: pre vs post: inconclusive, too few runs (1 vs 1;" in md
    assert "| inconclusive |" in md


def test_rebuilding_replaces_the_previous_report(tmp_path, report):
    sweep, built = report
    out = tmp_path / "r"
    shutil.copytree(built, out)  # a report built earlier
    (out / "stale.txt").write_text("old")
    build_report(sweep, out)
    assert not (out / "stale.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["r"]


def test_a_directory_that_is_not_a_sweep_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a sweep directory"):
        build_report(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_empty_sweep_is_a_config_error(tmp_path):
    sweep = make_sweep(tmp_path, [Cell({"norm_placement": "pre"})])
    with pytest.raises(ConfigError, match="no trials yet"):
        build_report(sweep, tmp_path / "out")


def test_an_unreadable_storage_is_a_config_error(tmp_path):
    sweep = make_sweep(tmp_path, [Cell({"norm_placement": "pre"}, seeds=[1.0])])
    (sweep / "journal.log").write_text("this is not\na journal\n")
    with pytest.raises(ConfigError, match=r"cannot read storage|unreadable storage") as e:
        build_report(sweep, tmp_path / "out")
    assert "\n" not in str(e.value)
    (sweep / "journal.log").write_text("")  # a journal of some other sweep, or of nothing
    with pytest.raises(ConfigError, match="holds no study of sweep 'synth'"):
        build_report(sweep, tmp_path / "out")
    (sweep / "journal.log").unlink()
    with pytest.raises(ConfigError, match="does not exist"):
        build_report(sweep, tmp_path / "out")
    (sweep / "sweep.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        build_report(sweep, tmp_path / "out")


def test_offline_wandb_run_holds_the_figures_and_tables(tmp_path, report):
    from wandb_runs import find_run_files, read_run

    sweep, _ = report
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    build_report(copy, tmp_path / "out", wandb_mode="offline")
    (path,) = find_run_files(copy / "wandb")
    run = read_run(path)
    assert run.finished and run.job_type == "report" and run.group == "synth"
    assert {"report/quality", "report/pareto", "report/runs", "report/comparisons"} <= set(
        run.media_keys
    )
    assert "pre beats post" in run.summary["report/findings"]


def test_publishing_without_wandb_workspaces_says_so_in_one_line(report):
    from bench.report.publish import ReportTrackingWarning, publish_wandb_report

    if importlib.util.find_spec("wandb_workspaces") is not None:
        pytest.skip("wandb-workspaces is installed: its absence cannot be shown here")
    sweep, _ = report
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert publish_wandb_report(load_sweep(sweep), ["x"], "val/loss") is None
    (w,) = [w for w in caught if issubclass(w.category, ReportTrackingWarning)]
    assert "wandb-workspaces is not installed" in str(w.message) and "\n" not in str(w.message)


def test_sweep_json_records_are_read_back(report):
    sweep, out = report
    meta = json.loads((sweep / "sweep.json").read_text())
    html = (out / "index.html").read_text()
    assert meta["command"] in html and "abc123" in html  # original command, git sha
    assert "bench sweep " in html and "bench report " in html


def test_wandb_mode_follows_the_sweep_unless_forced(report):
    from bench.report.publish import resolve_mode

    data = load_sweep(report[0])  # its spec disables tracking
    assert resolve_mode(data, publish=False, mode=None) == "disabled"
    assert resolve_mode(data, publish=False, mode="offline") == "offline"
    base = {**data.spec.base, "tracking": {"mode": "offline"}}
    data.spec = data.spec.model_copy(update={"base": base})
    assert resolve_mode(data, publish=False, mode=None) == "offline"

"""``bench compare``: config differences only, metrics side by side, one figure of curves."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.compare import config_differences, load_columns, shared_diagnostics
from tests.finished_sweep import finished_sweep
from tests.terminal import run_in_pty
from tests.test_cli_imports import run_probe


@pytest.fixture(scope="module")
def sweep() -> Path:
    return finished_sweep()[0]


def test_two_runs_show_only_the_config_keys_that_differ_and_their_metrics(sweep, tmp_path, capsys):
    pre, post = (sweep / "runs" / f"tune-norm_placement={p}-t0001" for p in ("pre", "post"))
    assert main(["compare", str(pre), str(post), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "model.norm_placement" in line)
    assert row.index("pre") < row.index("post")
    assert "task.name" not in out and "train.lr" not in out  # the same in both
    assert "tracking." not in out  # where records went is no difference
    for metric in ("train/loss", "val/loss", "best/val/loss", "val/acc"):
        assert any(line.lstrip("│ ").startswith(metric + " ") for line in out.splitlines()), metric
    status = next(line for line in out.splitlines() if line.lstrip("│ ").startswith("status "))
    assert status.count("completed") == 2
    png = tmp_path / "c" / "compare.png"
    assert f"figure: {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_a_sweep_gives_one_column_per_cell_from_its_seed_runs(sweep):
    columns = load_columns([str(sweep)])
    assert {c.label for c in columns} == {"norm_placement=pre", "norm_placement=post"}
    assert all(len(c.runs) == 1 and c.runs[0].path.name.startswith("seed-") for c in columns)
    diffs = config_differences(columns)
    assert set(diffs) == {"model.norm_placement"} | ({"train.lr"} & set(diffs))
    # every run logged the gradient diagnostics: they are drawn next to the losses
    shared = shared_diagnostics(columns)
    assert shared[0] == "cond/grad_norm_total"  # the whole-model norm first
    assert not any("/block_" in k or k.count("/") > 1 for k in shared)


def test_runs_of_different_sweeps_with_the_same_names_stay_apart(sweep, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(sweep, other)
    name = "seed-norm_placement=pre-t0000"
    run_a = sweep / "runs" / name
    run_b = other / "runs" / name
    if not run_a.is_dir():  # the seed numbering depends on which cell finished first
        name = "seed-norm_placement=pre-t0001"
        run_a, run_b = sweep / "runs" / name, other / "runs" / name
    assert main(["compare", str(run_a), str(run_b), "--out", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert f"daily/{name}" in out and f"other/{name}" in out
    assert "(identical configs)" in out


def test_on_a_terminal_compare_draws_its_table(sweep, tmp_path):
    code, screen = run_in_pty(
        ["compare", str(sweep), "--out", str(tmp_path / "c")], {**os.environ, "COLUMNS": "120"}
    )
    assert code == 0, screen
    assert "config (differences only)" in screen and "model.norm_placement" in screen
    assert max(len(line) for line in screen.splitlines()) <= 120


def test_compare_imports_no_torch_or_lightning(sweep, tmp_path):
    result = run_probe("compare", str(sweep), "--out", str(tmp_path / "c"))
    assert result["code"] == 0
    assert "torch" not in result["heavy"] and "lightning" not in result["heavy"]

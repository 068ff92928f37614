"""``bench ls``: runs and sweeps as one table, filtered and sorted, from small files only."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from bench.cli import main
from bench.listing import scan, select
from tests.finished_sweep import finished_sweep
from tests.terminal import run_in_pty
from tests.test_cli_imports import run_probe


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """runs/ holding the finished sweep (as sweeps/daily) and one stand-alone run."""
    sweep, _ = finished_sweep()
    root = tmp_path_factory.mktemp("ls") / "runs"
    shutil.copytree(sweep, root / "sweeps" / "daily")
    shutil.copytree(sweep / "runs" / "tune-norm_placement=post-t0001", root / "solo-post")
    return root


def test_a_directory_lists_each_sweep_as_one_row_and_each_run_outside_sweeps(root, capsys):
    assert main(["ls", str(root)]) == 0
    out = capsys.readouterr().out
    assert "2 under" in out
    sweep_row = next(line for line in out.splitlines() if "sweeps/daily" in line)
    assert "sweep" in sweep_row and "copy" in sweep_row and "norm_placement=pre,post" in sweep_row
    assert "done 6/6" in sweep_row  # 2 cells x (2 tuning trials + 1 seed)
    solo = next(line for line in out.splitlines() if "solo-post" in line)
    assert "norm_placement=post" in solo and "completed" in solo and " 10 " in solo
    assert "t0000" not in out  # a sweep's runs stay inside its row


def test_a_sweep_directory_lists_its_runs_with_phase_and_cell(root, capsys):
    assert main(["ls", str(root / "sweeps" / "daily")]) == 0
    out = capsys.readouterr().out
    assert "6 under" in out
    assert len(re.findall(r"tune norm_placement=(pre|post)", out)) == 4
    assert len(re.findall(r"seed norm_placement=(pre|post)", out)) == 2


def test_filters_and_sorting(root, capsys):
    entries = scan(root / "sweeps" / "daily")
    post = select(entries, filters={"norm_placement": "post"})
    assert {e.fields["model.norm_placement"] for e in post} == {"post"} and len(post) == 3
    assert select(entries, filters={"model.norm_placement": "post"}) == post
    by_best = select(entries, sort="best")
    bests = [e.best for e in by_best]
    assert bests == sorted(bests) and len(bests) == 6
    assert select(entries, sort="best", reverse=True)[0].best == max(bests)
    assert select(entries, status=["failed"]) == []
    assert [e.kind for e in select(scan(root), filters={"norm_placement": "pre"})] == ["sweep"]
    assert main(["ls", str(root), "--task", "reverse"]) == 0
    assert "no runs or sweeps" in capsys.readouterr().out


def test_ls_reads_small_files_only_and_imports_no_torch_lightning_or_optuna(root):
    result = run_probe("ls", str(root))
    assert result["code"] == 0 and "sweeps/daily" in result["stdout"]
    assert result["heavy"] == []


def test_on_a_terminal_ls_draws_the_table_in_the_terminal_width(root):
    code, screen = run_in_pty(["ls", str(root)], {**os.environ, "COLUMNS": "120"})
    assert code == 0
    lines = screen.splitlines()
    assert any("done 6/6" in line for line in lines)
    assert max(len(line) for line in lines) <= 120


def test_names_are_shown_as_text_never_as_rich_markup(tmp_path):
    import io

    from rich.console import Console

    from bench.listing import Entry, table

    root = tmp_path / "r[bold]"
    entry = Entry(kind="run", name="a[red]b", path=root / "a[red]b", what="[/]", status="done")
    out = io.StringIO()
    Console(file=out, width=200).print(table([entry], root))
    assert "a[red]b" in out.getvalue() and "[/]" in out.getvalue() and "r[bold]" in out.getvalue()

"""What ``bench sweep`` shows while it runs: piped, a line per finished trial; on a terminal,
the live status table; at the end, the commands for the report and the dashboard."""

from __future__ import annotations

import re

from tests.finished_sweep import finished_sweep
from tests.sweep_helpers import env_for_tests
from tests.terminal import run_in_pty


def test_piped_a_sweep_prints_one_line_per_finished_trial_then_the_next_commands():
    out, proc = finished_sweep()
    lines = [line for line in proc.stdout.splitlines() if line.startswith("trial ")]
    # 2 cells x 2 tuning trials + 2 seed runs, each once, with its objective and time
    assert len(lines) == 6, proc.stdout
    pattern = r"trial  (tune|seed) +norm_placement=(pre|post)( seed=1)? +#\d+ +complete +val/loss=[\d.]+  [\d.]+s"
    assert all(re.fullmatch(pattern, line) for line in lines), lines
    assert sum(" seed " in f" {line.split()[1]} " for line in lines) == 2
    assert "\x1b[" not in proc.stdout
    assert f"report:    bench report {out}" in proc.stdout
    assert f"dashboard: bench dashboard {out}" in proc.stdout
    assert proc.stdout.index("trial ") < proc.stdout.index("report:")


def test_on_a_terminal_a_sweep_shows_the_live_status_table_and_the_next_commands():
    out, _ = finished_sweep()
    spec = out.parent.parent.parent / "daily.yaml"
    code, screen = run_in_pty(
        ["sweep", str(spec), "--workers", "1", "--out", str(out)],
        {**env_for_tests(), "COLUMNS": "140"},
    )
    assert code == 0
    assert "done/budget" in screen and "norm_placement=post" in screen
    assert "━" in screen or "─" in screen  # a drawn table, not plain lines
    assert not re.search(r"^trial  tune", screen, re.M)  # the terminal gets the table instead
    assert f"bench report {out}" in screen and f"bench dashboard {out}" in screen


def test_on_a_narrow_terminal_the_status_table_folds_its_outcome_counts_into_one_column():
    import io

    from rich.console import Console

    from bench.sweeps.progress.standing import CellStatus
    from bench.sweeps.progress.status import status_table
    from bench.sweeps.study import Tally

    cell = "norm_placement=post,pos_encoding=learned"
    rows = [CellStatus("s/tune/x", cell, "tune", 5, Tally({"complete": 3, "pruned": 2}), 1.5, 0)]
    narrow = io.StringIO()
    Console(file=narrow, width=80).print(status_table(rows, "s", width=80))
    text = narrow.getvalue()
    assert "outcomes" in text and "3 complete," in text and "pruned" in text
    assert "diverged" not in text
    assert "…" not in text and "pos_encoding=learned" in text  # the cell is wrapped, not cut
    assert max(len(line) for line in text.splitlines()) <= 80 and "eta" in text
    wide = io.StringIO()
    Console(file=wide, width=160).print(status_table(rows, "s", width=160))
    assert all(col in wide.getvalue() for col in ("complete", "pruned", "diverged", "failed"))

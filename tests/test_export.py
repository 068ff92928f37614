"""``bench export``: a sweep's runs as one table (the report's), as CSV, JSON Lines or Parquet."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
from pathlib import Path

import pytest

from bench.cli import main
from tests.finished_sweep import finished_sweep
from tests.terminal import run_in_pty
from tests.test_cli_imports import run_probe

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


@pytest.fixture(scope="module")
def sweep() -> Path:
    return finished_sweep()[0]


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_csv_has_one_row_per_run_with_axes_status_metrics_and_diagnostics(sweep, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert main(["export", str(sweep), "--out", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"{out}  (6 runs x ")
    rows = _csv(out)
    assert len(rows) == 6
    assert {r["norm_placement"] for r in rows} == {"pre", "post"}
    assert sorted(r["phase"] for r in rows) == ["seed", "seed", "tune", "tune", "tune", "tune"]
    assert {r["status"] for r in rows} == {"completed"}
    for r in rows:
        assert float(r["val/loss"]) > 0 and float(r["train.lr"]) > 0
        assert float(r["cond/grad_norm_total"]) > 0  # a diagnostic's last value
        assert int(float(r["steps"])) == 10
        assert Path(r["run_dir"]).is_dir()


def test_jsonl_holds_the_same_table_with_nulls_for_what_was_not_measured(sweep, tmp_path, capsys):
    main(["export", str(sweep), "--out", str(tmp_path / "runs.csv")])
    assert main(["export", str(sweep), "--format", "jsonl", "--out", "-"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]  # after the csv's "path (n runs)" line
    records = [json.loads(line) for line in lines]
    rows = _csv(tmp_path / "runs.csv")
    assert len(records) == len(rows) == 6
    assert list(records[0]) == list(rows[0])  # same columns, same order
    for rec, row in zip(records, rows, strict=True):
        assert rec["cell"] == row["cell"] and rec["val/loss"] == pytest.approx(
            float(row["val/loss"])
        )
        assert all(v is None or v == v for v in rec.values())  # no NaN in JSON


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow is not installed")
def test_parquet_with_pyarrow_holds_the_same_rows(sweep, tmp_path):
    import pyarrow.parquet as pq

    assert main(["export", str(sweep), "--format", "parquet", "--out", str(tmp_path / "r.pq")]) == 0
    table = pq.read_table(tmp_path / "r.pq")
    assert table.num_rows == 6 and "val/loss" in table.column_names


def test_on_a_terminal_export_prints_where_it_wrote(sweep, tmp_path):
    out = tmp_path / "t.csv"
    code, screen = run_in_pty(["export", str(sweep), "--out", str(out)], dict(os.environ))
    assert code == 0
    assert f"{out}  (6 runs x " in screen and len(_csv(out)) == 6


def test_export_imports_no_torch_or_lightning(sweep, tmp_path):
    result = run_probe("export", str(sweep), "--out", str(tmp_path / "x.csv"))
    assert result["code"] == 0
    assert "torch" not in result["heavy"] and "lightning" not in result["heavy"]

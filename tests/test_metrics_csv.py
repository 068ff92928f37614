"""metrics.csv survives an interrupt in the middle of a save."""

from __future__ import annotations

import csv

import pytest

from bench.records import truncate_metrics
from bench.training.csvlog import MetricsCSVLogger


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_save_interrupted_mid_write_leaves_no_torn_row_and_the_next_save_writes_each_row_once(
    tmp_path, monkeypatch
):
    logger = MetricsCSVLogger(tmp_path)
    for step in range(5):
        logger.log_metrics({"train/loss": 2.0 - step / 10}, step=step)
    logger.save()
    for step in range(5, 10):
        logger.log_metrics({"train/loss": 2.0 - step / 10, "val/loss": 1.5}, step=step)

    real = csv.DictWriter.writerows

    def torn(self, rows):  # Ctrl-C after half a row reached the file
        self.writer.writerow(["0.5"])
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", torn)
    with pytest.raises(KeyboardInterrupt):
        logger.save()
    monkeypatch.setattr(csv.DictWriter, "writerows", real)
    assert [r["step"] for r in _rows(tmp_path / "metrics.csv")] == ["0", "1", "2", "3", "4"]

    logger.save()  # what Lightning's teardown does after the interrupt
    rows = _rows(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == [str(s) for s in range(10)]
    assert all(None not in r for r in rows)
    assert rows[-1]["val/loss"] == "1.5" and rows[0]["val/loss"] == ""
    assert not list(tmp_path.glob(".metrics.csv.*"))  # no temporary file left behind


def test_resuming_cuts_the_history_at_the_checkpoint_and_drops_a_torn_row(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "step,train/loss\n0,2.0\n1,1.9\n2,1.8,3,1.7\n3,1.7\n4,1.6\n"
    )
    truncate_metrics(tmp_path, 3)
    rows = _rows(tmp_path / "metrics.csv")
    assert [(r["step"], r["train/loss"]) for r in rows] == [
        ("0", "2.0"),
        ("1", "1.9"),
        ("3", "1.7"),
    ]

"""``metrics.csv``: Lightning's CSV logger, writing into the run directory itself."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from bench.io import atomic_path


class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but it keeps an existing metrics.csv (for resumes),
    remembers each key's last finite value (``last``: what the run's summary records) and
    never leaves a torn row (``save``)."""

    last: dict[str, float]

    def _check_log_dir_exists(self) -> None:  # Lightning's hook: it would delete the file
        self.last = {}
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                reader = csv.DictReader(f)
                self.metrics_keys = list(reader.fieldnames or [])
                for row in reader:
                    self._remember(row)

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        super().log_metrics(metrics_dict, step)
        self._remember(self.metrics[-1])

    def save(self) -> None:
        """Write the file whole beside metrics.csv and rename it over the old one.

        Lightning appends (or rewrites, when a key is new) in place: a Ctrl-C or SIGTERM
        mid-write left a torn row, and the save that Lightning's teardown makes next
        appended the same unsaved rows after it, so a row had more fields than the header
        and ``bench train --resume`` failed reading it. Here an interrupted save leaves the
        old file and keeps its rows for the next save. Rows a torn write left in an older
        file (more fields than the header) are dropped.
        """
        if not self.metrics:
            return
        self._record_new_keys()
        kept: list[dict[str, Any]] = []
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                kept = [row for row in csv.DictReader(f) if None not in row]
        with atomic_path(self.metrics_file_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)
            writer.writerows(self.metrics)
        self.metrics = []

    def _remember(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if key not in ("step", "epoch") and math.isfinite(number):
                self.last[key] = number

    def log_hparams(self, params: dict[str, Any]) -> None:  # config.yaml already holds them
        pass


class MetricsCSVLogger(CSVLogger):
    """Writes ``RUN_DIR/metrics.csv`` directly (no version folders) and appends on resume."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")

    def last_values(self) -> dict[str, float]:
        """Every logged key's last finite value, this segment's and (resumed) the file's."""
        return dict(self.experiment.last)

    @property
    def experiment(self) -> AppendingWriter:
        if not isinstance(self._experiment, AppendingWriter):  # None until first used
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment

"""``metrics.csv``: Lightning's CSV logger, writing into the run directory itself."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but it keeps an existing metrics.csv (for resumes) and
    remembers each key's last finite value (``last``: what the run's summary records)."""

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

"""``metrics.csv``: Lightning's CSV logger, writing into the run directory itself."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.csv_logs import _ExperimentWriter
from lightning.pytorch.loggers import CSVLogger


class _AppendingWriter(_ExperimentWriter):
    """Lightning's CSV writer, but it keeps an existing metrics.csv (for resumes)."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as f:
                self.metrics_keys = list(csv.DictReader(f).fieldnames or [])

    def log_hparams(self, params: dict[str, Any]) -> None:  # config.yaml already holds them
        pass


class MetricsCSVLogger(CSVLogger):
    """Writes ``RUN_DIR/metrics.csv`` directly (no version folders) and appends on resume."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__(save_dir=str(run_dir), name="", version="")

    @property
    def experiment(self) -> _ExperimentWriter:
        if self._experiment is None:
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment

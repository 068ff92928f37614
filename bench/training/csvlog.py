"""``metrics.csv``: Lightning's CSV logger, writing into the run directory itself."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, but it keeps an existing metrics.csv (for resumes)."""

    def _check_log_dir_exists(self) -> None:  # Lightning's hook: it would delete the file
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
    def experiment(self) -> AppendingWriter:
        if not isinstance(self._experiment, AppendingWriter):  # None until first used
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment

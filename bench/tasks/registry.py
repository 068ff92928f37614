"""The task registry: ``build_datamodule(cfg, arch)`` picks a task class by ``cfg.name``."""

from __future__ import annotations

from bench.config import ConfigError, TaskConfig
from bench.tasks.base import BenchDataModule
from bench.tasks.probes import CopyTask, ModAddTask, RecallTask, ReverseTask, SortTask
from bench.tasks.scan import ScanTask
from bench.tasks.text import TextTask

TASKS: dict[str, type[BenchDataModule]] = {
    "copy": CopyTask,
    "reverse": ReverseTask,
    "sort": SortTask,
    "recall": RecallTask,
    "modadd": ModAddTask,
    "scan": ScanTask,
    "text": TextTask,
}


def build_datamodule(cfg: TaskConfig, arch: str) -> BenchDataModule:
    """The DataModule of ``cfg.name`` for ``arch`` ("decoder" or "encoder_decoder")."""
    try:
        cls = TASKS[cfg.name]
    except KeyError:
        raise ConfigError(f"task.name={cfg.name!r}: allowed: {', '.join(TASKS)}") from None
    return cls(cfg, arch)

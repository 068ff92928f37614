"""Deterministic, offline tasks: synthetic probes, SCAN-style translation, byte-level text.

``build_datamodule(cfg, arch)`` is the one entry point: it picks the task class
from :data:`TASKS` by ``cfg.name`` and returns a :class:`BenchDataModule`.
"""

from __future__ import annotations

from bench.config import ConfigError, TaskConfig
from bench.tasks.base import BenchDataModule
from bench.tasks.probes import CopyTask, ModAddTask, RecallTask, ReverseTask, SortTask
from bench.tasks.scan import ScanTask
from bench.tasks.text import TextTask
from bench.tasks.vocab import BOS, EOS, IGNORE, N_SPECIAL, PAD, SEP

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


__all__ = [
    "BOS",
    "EOS",
    "IGNORE",
    "N_SPECIAL",
    "PAD",
    "SEP",
    "TASKS",
    "BenchDataModule",
    "build_datamodule",
]

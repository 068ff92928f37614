"""Deterministic, offline tasks: synthetic probes, SCAN-style translation, byte-level text.

``build_datamodule(cfg, arch)`` is the one entry point: it picks the task class
from :data:`TASKS` by ``cfg.name`` and returns a :class:`BenchDataModule`.

The names below are imported on first use, so that ``bench.tasks.baseline``
(plain Python: chance levels and the learning verdict) can be imported by the
report without importing torch or Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.tasks.base import BenchDataModule
    from bench.tasks.registry import TASKS, build_datamodule
    from bench.tasks.vocab import BOS, EOS, IGNORE, N_SPECIAL, PAD, SEP

_WHERE = {
    "BenchDataModule": "bench.tasks.base",
    "TASKS": "bench.tasks.registry",
    "build_datamodule": "bench.tasks.registry",
    **{name: "bench.tasks.vocab" for name in ("BOS", "EOS", "IGNORE", "N_SPECIAL", "PAD", "SEP")},
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'bench.tasks' has no attribute {name!r}")


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

"""bench: a research benchmark suite for transformer architecture choices.

From Python: :func:`train`, :func:`sweep`, :func:`build_report`, :func:`load_run`,
:func:`load_sweep` and :func:`run_config` (:mod:`bench.api`). ``import bench`` loads
no torch, Lightning or Optuna; each function loads what it needs when called.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["build_report", "load_run", "load_sweep", "run_config", "sweep", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("bench.api"), name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")

"""Optuna sweeps: the spec, studies, the worker loop, the launcher, progress, dashboard.

The public face (``__all__``): :func:`run_sweep`, :func:`run_worker`, :func:`print_status`,
:func:`start_dashboard`, :class:`SweepSpec`, :func:`load_spec`. User errors raise
:class:`bench.config.ConfigError`. Imported lazily, so a worker (``python -m bench worker``)
does not import the launcher. The families: the core here, ``slurm/``, ``recovery/``,
``progress/``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "run_sweep": "bench.sweeps.launcher",
    "assign_devices": "bench.sweeps.launcher",
    "run_worker": "bench.sweeps.worker",
    "print_status": "bench.sweeps.progress.status",
    "start_dashboard": "bench.sweeps.progress.dashboard",
    "SweepSpec": "bench.sweeps.spec",
    "load_spec": "bench.sweeps.spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'bench.sweeps' has no attribute {name!r}")

"""What every diagnostic is: a Lightning callback that measures, logs and writes.

A diagnostic is built by :func:`bench.diagnostics.build_callbacks` from
``RunConfig.diagnostics`` (its entry in ``CALLBACKS``), wrapped by
:func:`bench.diagnostics.guard.guard` (an exception in any hook below becomes a
warning and a ``diagnostic_errors`` record, and switches the diagnostic off),
and added to the run's Trainer by ``train_run``. Its measurements are
excluded from throughput timings when they run inside
:func:`bench.diagnostics.throughput.stopwatch.exclude_from_throughput`.

The Lightning hooks it uses are its "when it runs" (each subclass's docstring
says which); the attributes and methods here are what the rest of bench asks
of it:

- :attr:`Diagnostic.name`: its key in ``CALLBACKS`` and in ``diagnostic_errors``;
- :attr:`Diagnostic.metrics`: the namespace of the metric keys it logs
  (``cond/``, ``hessian/``...): W&B, ``metrics.csv``, the report and the
  diagnoses read them, so they are a contract;
- :attr:`Diagnostic.files`: the files it writes into the run's ``diagnostics/``;
- :meth:`Diagnostic.summary`: whole-run numbers for ``summary.json``;
- :meth:`Diagnostic.save`: write its files.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import lightning as L
from torch import nn


def model_of(pl_module: L.LightningModule) -> nn.Module:
    """The ``nn.Module`` a bench LightningModule trains: ``pl_module.model``."""
    model = pl_module.model
    assert isinstance(model, nn.Module), "a diagnostic needs pl_module.model (an nn.Module)"
    return model


def datamodule_of(trainer: L.Trainer) -> L.LightningDataModule | None:
    """The datamodule ``trainer.fit`` was given (set at run time; not in Trainer's stub)."""
    return getattr(trainer, "datamodule", None)


class Diagnostic(L.Callback):
    """Base class of the diagnostics callbacks (see the module docstring)."""

    name: ClassVar[str] = ""
    """The diagnostic's name: its ``CALLBACKS`` key, and how its errors are recorded."""

    metrics: ClassVar[str] = ""
    """The prefix of every metric key it logs, e.g. ``"cond/"``."""

    files: ClassVar[tuple[str, ...]] = ()
    """File names (patterns with ``*``) it may write into the run's ``diagnostics/``."""

    def summary(self) -> dict[str, float]:
        """Whole-run numbers that go into ``summary.json`` and the run's final metrics.

        Called once by ``train_run`` after ``trainer.fit`` returns (a completed,
        stopped or diverged run; not after a crash, preemption or Ctrl-C), on
        every process. Its numbers replace the last logged values of the same
        keys. Default: nothing.
        """
        return {}

    def save(self) -> list[Path]:
        """Write the diagnostic's files atomically (:mod:`bench.io`); returns the paths written.

        Called from the diagnostic's own ``on_train_end`` on the global-zero
        process (so the files are there when ``train_run`` logs them to W&B),
        or directly, e.g. in a notebook. Default: nothing to write.
        """
        return []

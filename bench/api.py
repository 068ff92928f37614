"""bench from Python (a notebook, a script): the commands as functions.

``import bench`` loads nothing heavy; each function imports what it needs when
called. Configs take the same dotted keys as the command line::

    import bench

    result = bench.train({"model.n_heads": 8, "train.max_steps": 200})
    run = bench.load_run(result.run_dir)          # config, summary, history()
    sweep = bench.sweep("sweeps/quickstart.yaml", workers=2)
    data = bench.load_sweep(sweep)                # data.rows: one dict per trial
    bench.build_report(sweep)                     # -> reports/<name>/index.html

A user's mistake raises :class:`bench.config.ConfigError` with the one line the
command would print.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.config import RunConfig
    from bench.report.collect import SweepData
    from bench.run import Run
    from bench.training.finish import RunResult


def run_config(
    overrides: Mapping[str, Any] | None = None, path: str | Path | None = None
) -> RunConfig:
    """A validated run config: defaults, then the YAML file at ``path``, then ``overrides``
    (dotted keys, e.g. ``{"model.pos_encoding": "rope", "variant": "llama"}``)."""
    from bench.config import build_run_config

    return build_run_config(path, dict(overrides or {}))


def train(config: RunConfig | Mapping[str, Any] | None = None) -> RunResult:
    """Train one configuration (a RunConfig, or overrides for :func:`run_config`) and
    record it; returns its status, run directory and final metrics."""
    from bench.config import RunConfig
    from bench.training.run import train_run

    cfg = config if isinstance(config, RunConfig) else run_config(config)
    return train_run(cfg)


def sweep(spec: str | Path, workers: int | None = None, out: str | Path | None = None) -> Path:
    """Run (or resume) a sweep with local worker processes; returns its directory.

    Raises RuntimeError when it did not finish (interrupted, or a cell whose every
    trial failed: ``bench status`` on the directory says which).
    """
    from bench.sweeps.launcher import run_sweep
    from bench.sweeps.layout import DEFAULT_ROOT, resolve_spec

    parsed, existing = resolve_spec(spec)  # a spec file, or the directory of a sweep
    where = Path(out) if out is not None else (existing or DEFAULT_ROOT / parsed.name)
    code = run_sweep(spec, workers=workers, out=out, live=False)
    if code != 0:
        raise RuntimeError(f"the sweep did not finish (exit code {code}); bench status {where}")
    return where


def load_run(run_dir: str | Path) -> Run:
    """A run directory's files (:class:`bench.run.Run`): config, status, summary, history()."""
    from bench.run import Run

    return Run.load(run_dir)


def load_sweep(sweep_dir: str | Path) -> SweepData:
    """A sweep as the report reads it: ``rows`` (one dict per trial: cell, phase, seed,
    status, metrics, run_dir, ...), the cells, the compared axes and the objective."""
    from bench.report.collect import load_sweep as collect

    return collect(sweep_dir)


def build_report(sweep_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the sweep's report (``index.html``, ``report.md``, figures, ``runs.csv``);
    returns its directory (default ``reports/<sweep name>``)."""
    from bench.report import build_report as build

    return build(sweep_dir, out)

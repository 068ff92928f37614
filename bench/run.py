"""One reader of a run directory: :class:`Run`.

A run directory (written by :mod:`bench.training`; file names in :mod:`bench.records`)
holds ``config.yaml`` (the resolved config), ``status.json`` (running / completed /
failed / ... with a reason), ``manifest.json`` (versions, seed, device, precision),
``metrics.csv`` (the history), ``summary.json`` (written last: the run finished),
``checkpoints/`` and ``diagnostics/``.

:meth:`Run.load` reads the small files once, with one error policy: a missing file
reads as empty, and so does one that does not parse (torn, not UTF-8, not a mapping),
which is also named in :attr:`Run.problems`. A listing, a comparison, a report or a
diagnosis therefore shows what a directory holds instead of failing on one bad run.
The history (``metrics.csv``) and a diagnostic's JSON are read on demand.

Plain Python (no torch, no Optuna): ``bench ls``, ``compare``, ``status`` and the
report read runs through it.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from bench.config.errors import ConfigError
from bench.config.overrides import flatten
from bench.records import CONFIG, DIAGNOSTICS, LAST_CKPT, MANIFEST, METRICS, STATUS, SUMMARY

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Run:
    """The small files of one run directory, read once (see the module docstring)."""

    dir: Path
    config: dict[str, Any] = field(default_factory=dict)  # config.yaml, nested as written
    status: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # {} until the run finished
    problems: tuple[str, ...] = ()  # "summary.json: not JSON (...)" for each unreadable file

    @staticmethod
    def is_run_dir(path: str | Path) -> bool:
        """Whether ``path`` is a run directory (it has the ``config.yaml`` a run writes first)."""
        return (Path(path) / CONFIG).is_file()

    @classmethod
    def load(cls, run_dir: str | Path) -> Run:
        """Read ``run_dir``'s config, status, manifest and summary (never raises)."""
        run_dir = Path(run_dir)
        problems: list[str] = []
        config = _mapping(run_dir / CONFIG, _parse_yaml, problems)
        status = _mapping(run_dir / STATUS, json.loads, problems)
        manifest = _mapping(run_dir / MANIFEST, json.loads, problems)
        summary = _mapping(run_dir / SUMMARY, json.loads, problems)
        return cls(run_dir, config, status, manifest, summary, tuple(problems))

    # ------------------------------------------------------------------ what it is

    @property
    def finished(self) -> bool:
        """``summary.json`` exists: the run ended (completed, diverged, stopped, ...)."""
        return (self.dir / SUMMARY).is_file()

    @property
    def resumable(self) -> bool:
        """It has a last checkpoint and has not finished: ``bench train --resume`` continues it."""
        return (self.dir / LAST_CKPT).is_file() and not self.finished

    @property
    def state(self) -> str:
        """The outcome in ``summary.json``, else the status in ``status.json``, else ``unknown``."""
        return str(self.summary.get("status") or self.status.get("status") or "unknown")

    def flat_config(self) -> dict[str, Any]:
        """The config as dotted keys: ``{"model.d_model": 64, "train.lr": 0.001, ...}``."""
        return flatten(self.config)

    # ------------------------------------------------------------------ its numbers

    def final_metrics(self) -> dict[str, float]:
        """``summary.json``'s metrics, finite numbers only ({} before the run finished)."""
        raw = self.summary.get("metrics")
        return _finite(raw) if isinstance(raw, dict) else {}

    def history(self) -> list[dict[str, float]]:
        """``metrics.csv`` as rows of floats (empty cells dropped; [] when absent or unreadable)."""
        path = self.dir / METRICS
        try:
            with open(path, newline="") as f:
                return [
                    {k: float(v) for k, v in row.items() if k and v not in ("", None)}
                    for row in csv.DictReader(f)
                ]
        except (OSError, ValueError, csv.Error):
            return []

    def to_pandas(self) -> pd.DataFrame:
        """The history as a DataFrame: one row per logged step (the index, ``step``), one
        column per metric (and ``epoch``, ``lr``), NaN where a step logged no value.

        Lightning writes a step's training and validation metrics as separate lines; they
        are one row here (a value logged twice at a step, as a resumed run may: the later).
        Needs pandas (``pip install 'bench[notebook]'``; :class:`bench.extras.MissingExtra`
        without it); an empty frame when there is no history yet.
        """
        from bench.extras import require

        pandas = require("pandas", "Run.to_pandas()")
        frame = pandas.DataFrame(self.history())
        if "step" not in frame.columns:
            return pandas.DataFrame(index=pandas.Index([], dtype="int64", name="step"))
        frame["step"] = frame["step"].astype("int64")
        return frame.groupby("step", sort=True).last()

    def diagnostic(self, name: str) -> dict[str, Any]:
        """A JSON file under ``diagnostics/`` (e.g. ``landscape_summary.json``); {} if absent."""
        return _mapping(self.dir / DIAGNOSTICS / name, json.loads, [])


# config.yaml is written by bench (``dump_yaml``), never by hand: libyaml's safe loader
# reads it as the pure-Python one would, about ten times faster (``bench ls`` reads many).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def _mapping(path: Path, parse: Any, problems: list[str]) -> dict[str, Any]:
    """The mapping a file holds; {} when absent, and {} plus a problem when unreadable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"{path.name}: unreadable ({type(e).__name__})")
        return {}
    try:
        data = parse(text)
    except Exception as e:  # json and yaml raise their own errors; none may escape a reader
        problems.append(f"{path.name}: does not parse ({type(e).__name__})")
        return {}
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path.name}: not a mapping")
        return {}
    return data


def _finite(raw: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in raw.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    }


def last_checkpoint(run_dir: Path) -> Path:
    """A run directory's last checkpoint; ConfigError in one line when there is none.

    Plain file checks, so a command can refuse a wrong directory before torch loads.
    """
    if not Run.is_run_dir(run_dir):
        raise ConfigError(f"{run_dir}: not a run directory (no {CONFIG})")
    ckpt = run_dir / LAST_CKPT
    if not ckpt.is_file():
        raise ConfigError(
            f"{run_dir}: no checkpoint at {LAST_CKPT}; a landscape needs a run that saved one"
        )
    return ckpt

"""Sweep directory + Optuna storage + run directories -> one tidy table of runs.

The report reads only files and the study storage (never the model), the sweep
directory through :func:`bench.sweeps.layout.open_sweep_dir` and each trial
through :func:`bench.sweeps.trials.read_trial` (the one reader of a sweep). Every
trial of every study of the sweep becomes one row (a plain dict): its cell and
compared axis values, phase, seed, outcome, tuned parameters, final metrics
from the run's ``summary.json`` (falling back to the trial's ``metrics`` user
attribute) and the last value of a few diagnostics from ``metrics.csv``. Runs
that are still going, failed or diverged stay in the table with their reason.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench.config import ConfigError
from bench.records import DIAGNOSTICS
from bench.run import Run

if TYPE_CHECKING:
    import pandas as pd

    from bench.sweeps.layout import Sweep
    from bench.sweeps.spec import SweepSpec
    from bench.sweeps.trials import TrialRecord

# Final values read from metrics.csv when summary.json does not have them.
DIAGNOSTIC_KEYS = (
    "throughput/tokens_per_sec",
    "throughput/mfu",
    "throughput/peak_mem_mb",
    "hessian/lambda_max",
    "hessian/trace",
    "cond/noise_scale",
    "cond/grad_norm_total",
)
# Columns first in runs.csv, in this order; the remaining metrics follow sorted.
LEAD_METRICS = (
    "val/loss",
    "best/val/loss",
    "val/acc",
    "val/exact_match",
    *DIAGNOSTIC_KEYS,
)


# Columns of whole numbers that a missing value would otherwise turn into floats.
INTEGER_COLUMNS = ("trial", "seed", "last_step", "steps", "params")


@dataclass
class SweepData:
    """Everything the report knows about a sweep."""

    name: str
    dir: Path
    meta: dict[str, Any]  # sweep.json
    spec: SweepSpec  # spec.yaml, typed (bench.sweeps.layout reads it)
    spec_text: str
    axes: list[str]  # compared axes as columns ("norm_placement")
    axis_keys: dict[str, str]  # column -> config key ("model.norm_placement")
    cells: list[str]  # planned cells, in spec order
    tuned: list[str]  # tuned parameter keys ("train.lr")
    objective: str
    direction: str
    rows: list[dict[str, Any]]
    studies: dict[str, Any] = field(default_factory=dict)  # name -> optuna.Study
    train_length: int | None = None  # task.seq_len: the "1x" of length generalization
    # the axes a size ladder varies (scale.ladder; never compared, trends read across them)
    ladder: list[str] = field(default_factory=list)
    # The metric cells are judged on and its direction (set once, from the objective):
    # ``best/val/loss`` (a run's lowest validation loss) when the objective is ``val/loss``,
    # so one late noisy validation does not decide a comparison.
    quality: tuple[str, str] = field(init=False)

    def __post_init__(self) -> None:
        best = self.objective == "val/loss"
        self.quality = ("best/val/loss", "minimize") if best else (self.objective, self.direction)

    def runs(self, phase: str | None = None, ok: bool = False) -> list[dict[str, Any]]:
        """Rows of one phase (None: all); ``ok``: only runs that finished normally."""
        return [
            r
            for r in self.rows
            if (phase is None or r["phase"] == phase) and (not ok or r["status"] == "completed")
        ]

    def to_pandas(self) -> pd.DataFrame:
        """The runs as a DataFrame: one row per trial, the columns of ``runs.csv`` and
        ``bench export`` (:func:`flat_rows`: cell, each compared axis, phase, trial, seed,
        status, tuned parameters, objective, final metrics, last diagnostics, run_dir).

        What was not measured or does not apply (a tuning trial's seed) is missing
        (NaN / None), not ``""``; trial, seed and step counts are integers (``Int64``).
        Needs pandas (``pip install 'bench[notebook]'``; :class:`bench.extras.MissingExtra`
        without it).
        """
        from bench.extras import require

        pandas = require("pandas", "SweepData.to_pandas()")
        cols, rows = flat_rows(self)
        frame = pandas.DataFrame(
            [{c: None if v == "" else v for c, v in r.items()} for r in rows], columns=cols
        )
        for col in INTEGER_COLUMNS:
            values = frame[col].dropna() if col in frame.columns else None
            if values is not None and all(isinstance(v, int) for v in values):
                frame[col] = frame[col].astype("Int64")
        return frame


# ----------------------------------------------------------------------------- loading


def load_sweep(sweep_dir: str | Path, storage: str | None = None) -> SweepData:
    """Read a sweep directory; ConfigError (one line) when it is not a readable sweep.

    The directory is read by :func:`bench.sweeps.layout.open_sweep_dir` (the typed
    spec as the sweep recorded it); ``storage``: the storage URL, when sweep.json's
    is not usable here (an RDB URL is recorded with its password hidden).
    """
    from bench.sweeps.layout import open_sweep_dir

    sweep = open_sweep_dir(sweep_dir, storage)
    spec, d, name = sweep.spec, sweep.dir, sweep.spec.name
    meta = sweep.record()
    studies = _load_studies(sweep)
    if not studies:
        raise ConfigError(
            f"{d}: storage {meta['storage']} holds no study of sweep '{name}' "
            "(not this sweep's storage, or nothing recorded yet)"
        )
    space = spec.space
    tuned = list(space.params) if space is not None else []
    if spec.search is not None:  # search mode: architecture axes are tuned parameters
        axis_keys = {k.removeprefix("model."): k for k in tuned if k.startswith("model.")}
    else:  # a ladder's keys are axes too, so comparisons are matched within a rung
        keys = [*(spec.compare or {}), *spec.ladder_keys]
        axis_keys = {k.removeprefix("model."): k for k in keys}
    objective = spec.objectives[0]
    cells = spec.cells() if spec.compare is not None else []
    rows = _rows(sweep, studies, axis_keys, dict(cells), tuned, objective.metric)
    if not rows:
        raise ConfigError(f"{d}: sweep '{name}' has no trials yet (nothing to report)")
    seq_len = (spec.base.get("task") or {}).get("seq_len", _default_seq_len())
    return SweepData(
        name=name,
        dir=d,
        meta=meta,
        spec=spec,
        spec_text=sweep.spec_text(),
        axes=list(axis_keys),
        axis_keys=axis_keys,
        ladder=[a for a, k in axis_keys.items() if k in spec.ladder_keys],
        cells=[c for c, _ in cells] if cells else sorted({r["cell"] for r in rows}),
        tuned=tuned,
        objective=objective.metric,
        direction=objective.direction,
        rows=rows,
        studies=studies,
        train_length=int(seq_len) if seq_len else None,
    )


def _load_studies(sweep: Sweep) -> dict[str, Any]:
    """The sweep's studies; a storage that cannot be read is a one-line ConfigError."""
    try:
        return sweep.studies()
    except Exception as e:
        from bench import redact

        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(
            redact.text(f"{sweep.dir}: unreadable storage ({type(e).__name__}: {first})")
        ) from None


def _rows(
    sweep: Sweep,
    studies: dict[str, Any],
    axis_keys: dict[str, str],
    cell_overrides: dict[str, dict[str, Any]],
    tuned: list[str],
    objective: str,
) -> list[dict[str, Any]]:
    """One row per trial, leaving out trials given back by a worker and superseded seed runs."""
    from bench.sweeps.study import best_sources
    from bench.sweeps.trials import read_trial

    sources = best_sources(
        {n: s for n, s in studies.items() if not n.endswith("/seeds")}, sweep.spec
    )
    rows = []
    for study_name, study in studies.items():
        for t in study.get_trials(deepcopy=False):
            rec = read_trial(study_name, t)
            if rec.discarded:  # given back by a worker: holds no slot
                continue
            if rec.source not in (None, *sources):
                continue  # a seed run of an earlier best, before the sweep grew
            rows.append(_row(sweep, rec, axis_keys, cell_overrides, tuned, objective))
    return rows


def _default_seq_len() -> int:
    from bench.config import TaskConfig

    return TaskConfig().seq_len


# ----------------------------------------------------------------------------- one trial


def _row(
    sweep: Sweep,
    rec: TrialRecord,
    axis_keys: dict[str, str],
    cell_overrides: dict[str, dict[str, Any]],
    tuned: list[str],
    objective: str,
) -> dict[str, Any]:
    """The trial's record, its axis values and what its run directory holds."""
    fixed = {**cell_overrides.get(rec.cell, {}), **rec.params}
    run_dir = _run_dir(rec.run_dir, sweep.dir)
    row: dict[str, Any] = {
        "sweep": sweep.spec.name,
        "study": rec.study,
        "phase": rec.phase,
        "cell": rec.cell,
    }
    for col, key in axis_keys.items():
        v = fixed.get(key)
        row[col] = _fmt(v) if v is not None else ""
    row.update(
        trial=rec.number,
        seed=rec.seed if rec.seed is not None else "",
        state=rec.state,
        status=rec.status,
        reason=rec.reason,
    )
    for key in tuned:
        row[key] = fixed.get(key, "")
    if "train.lr" not in tuned:
        row["train.lr"] = fixed.get("train.lr", "")
    row["value"] = rec.values[0] if rec.values else None
    row["last_step"] = rec.last_step
    run = Run.load(run_dir) if run_dir is not None and run_dir.is_dir() else None
    metrics, summary = _metrics(run, rec.metrics)
    row["learning"] = summary.get("learning") if isinstance(summary.get("learning"), dict) else None
    row["baseline"] = _baseline(summary.get("baseline"))
    row["config"] = run.config if run is not None else {}
    row["params"] = summary.get("params")
    row["steps"] = summary.get("steps")
    row["wall_time"] = summary.get("wall_time")
    row["has_summary"] = bool(summary)
    row["metrics"] = metrics  # flattened into columns by table_columns()
    row["run_dir"] = str(run_dir) if run_dir else ""
    if rec.status == "completed" and objective not in metrics and row["value"] is None:
        row["status"], row["reason"] = "incomplete", f"no {objective} recorded"
    return row


def _baseline(raw: Any) -> dict[str, float] | None:
    """summary.json's chance levels (finite numbers only); None when not recorded."""
    if not isinstance(raw, dict):
        return None
    return {k: float(v) for k, v in raw.items() if _number(v)}


def config_value(row: dict[str, Any], key: str) -> Any:
    """``section.key`` from the run's config.yaml (None when not recorded)."""
    node: Any = row.get("config") or {}
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _fmt(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _run_dir(recorded: Any, sweep_dir: Path) -> Path | None:
    if not recorded:
        return None
    p = Path(str(recorded))
    if p.is_dir():
        return p
    moved = sweep_dir / "runs" / p.name  # the sweep directory was copied or moved
    return moved if moved.is_dir() else p


def _metrics(run: Run | None, attrs: dict[str, Any]) -> tuple[dict[str, float], dict]:
    """Final metrics: summary.json's, else the trial's attribute (an unfinished run).

    Runs recorded before summary.json held every metric lack the diagnostics' last values
    and a later ``bench landscape``'s numbers; for those alone they are read from
    metrics.csv and ``landscape_summary.json``.
    """
    metrics = {k: float(v) for k, v in attrs.items() if _number(v)}
    if run is None:
        return metrics, {}
    metrics.update(run.final_metrics())
    if not any(k in metrics for k in DIAGNOSTIC_KEYS):
        metrics.update(last_values(run.history(), DIAGNOSTIC_KEYS))
    extra = run.diagnostic("landscape_summary.json")  # equal to summary.json's, when recorded
    metrics.update({k: float(v) for k, v in extra.items() if _number(v)})
    return metrics, run.summary


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


# ----------------------------------------------------------------------------- run files


def history(run_dir: Path | str | None) -> list[dict[str, float]]:
    """metrics.csv of a run as rows of floats ([] when absent or unreadable)."""
    return Run(Path(run_dir)).history() if run_dir else []


def last_values(rows: list[dict[str, float]], keys: Iterable[str]) -> dict[str, float]:
    """The last finite value of each key over the history rows."""
    out: dict[str, float] = {}
    for row in rows:
        for k in keys:
            v = row.get(k)
            if v is not None and math.isfinite(v):
                out[k] = v
    return out


def series(rows: list[dict[str, float]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one metric over a run's history."""
    pts = [(r["step"], r[key]) for r in rows if key in r and "step" in r and math.isfinite(r[key])]
    if not pts:
        return np.zeros(0), np.zeros(0)
    arr = np.array(pts)
    return arr[:, 0], arr[:, 1]


def load_npz(path: Path) -> dict[str, np.ndarray] | None:
    """An .npz file as a dict of arrays, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError):
        return None


def diagnostics_dir(row: dict[str, Any]) -> Path | None:
    d = row.get("run_dir")
    return Path(d) / DIAGNOSTICS if d else None


def manifests(data: SweepData) -> list[dict[str, Any]]:
    """manifest.json of every run directory that has one."""
    found = (Run.load(Path(r["run_dir"])).manifest for r in data.rows if r["run_dir"])
    return [m for m in found if m]


# ----------------------------------------------------------------------------- the table


def metric_columns(rows: list[dict[str, Any]]) -> list[str]:
    """Metric columns of runs.csv: the lead metrics present, then the rest sorted."""
    present = {k for r in rows for k in r["metrics"]}
    lead = [k for k in LEAD_METRICS if k in present]
    return lead + sorted(present - set(lead))


def table_columns(data: SweepData) -> list[str]:
    base = ["sweep", "cell", *data.axes, "phase", "study", "trial", "seed", "status", "reason",
            "learning"]  # fmt: skip
    tuned = list(dict.fromkeys([*data.tuned, "train.lr"]))
    tail = ["value", "last_step", "params", "steps", "wall_time", "has_summary", "run_dir"]
    return base + tuned + tail[:1] + metric_columns(data.rows) + tail[1:]


def flat_rows(data: SweepData) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows) with metrics spread into columns; None for what was not measured."""
    cols = table_columns(data)
    out = []
    for r in data.rows:
        flat = {
            k: v for k, v in r.items() if k not in ("metrics", "config", "baseline", "learning")
        }
        flat["learning"] = (r.get("learning") or {}).get("status", "")
        flat.update(r["metrics"])
        out.append({c: flat.get(c) for c in cols})
    return cols, out


def runs_csv(data: SweepData) -> str:
    """The tidy table of all runs as CSV text (blank cells for unmeasured values)."""
    cols, rows = flat_rows(data)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()

"""Sweep directory + Optuna storage + run directories -> one tidy table of runs.

The report reads only files and the study storage (never the model). Every
trial of every study of the sweep becomes one row (a plain dict): its cell and
compared axis values, phase, seed, outcome, tuned parameters, final metrics
from the run's ``summary.json`` (falling back to the trial's ``metrics`` user
attribute) and the last value of a few diagnostics from ``metrics.csv``. Runs
that are still going, failed or diverged stay in the table with their reason.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import ConfigError, read_text_file, safe_load
from bench.records import CONFIG, DIAGNOSTICS, MANIFEST, SUMMARY, read_json, read_metrics

DISCARDED = frozenset({"surplus", "duplicate"})  # bench.sweeps.study.DISCARDED
SWEEP_JSON = "sweep.json"
SPEC_YAML = "spec.yaml"

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


@dataclass
class SweepData:
    """Everything the report knows about a sweep."""

    name: str
    dir: Path
    meta: dict[str, Any]  # sweep.json
    spec: dict[str, Any]  # spec.yaml as a mapping
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

    def runs(self, phase: str | None = None, ok: bool = False) -> list[dict[str, Any]]:
        """Rows of one phase (None: all); ``ok``: only runs that finished normally."""
        return [
            r
            for r in self.rows
            if (phase is None or r["phase"] == phase) and (not ok or r["status"] == "completed")
        ]


# ----------------------------------------------------------------------------- loading


def load_sweep(sweep_dir: str | Path, storage: str | None = None) -> SweepData:
    """Read a sweep directory; ConfigError (one line) when it is not a readable sweep.

    ``storage``: the storage URL, when sweep.json's is not usable here (an RDB URL
    is recorded with its password hidden).
    """
    d = Path(sweep_dir)
    if not (d / SWEEP_JSON).is_file():
        raise ConfigError(f"{d}: not a sweep directory (no {SWEEP_JSON})")
    try:
        meta = json.loads((d / SWEEP_JSON).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{d / SWEEP_JSON}: unreadable ({e})") from None
    if not isinstance(meta, dict) or "name" not in meta or "storage" not in meta:
        raise ConfigError(f"{d / SWEEP_JSON}: not a sweep record (needs 'name' and 'storage')")
    spec_path = d / meta.get("spec", SPEC_YAML)
    spec_text = read_text_file(spec_path, "sweep spec") if spec_path.is_file() else ""
    try:
        spec = safe_load(spec_text) or {}
    except Exception as e:  # a broken spec.yaml must not hide the results
        raise ConfigError(f"{spec_path}: not valid YAML ({e})") from None
    name = str(meta["name"])
    storage_obj = _open_storage(d, storage or str(meta["storage"]))
    studies = _load_studies(storage_obj, name, d)
    if not studies:
        raise ConfigError(
            f"{d}: storage {meta['storage']} holds no study of sweep '{name}' "
            "(not this sweep's storage, or nothing recorded yet)"
        )

    compare: dict[str, list[Any]] = spec.get("compare") or {}
    axis_keys = {k.removeprefix("model."): k for k in compare}
    tune = spec.get("tune") or spec.get("search") or {}
    tuned = list((tune.get("params") or {}).keys())
    if spec.get("search"):  # search mode: architecture axes are tuned parameters
        axis_keys = {k.removeprefix("model."): k for k in tuned if k.startswith("model.")}
    objective, direction = _objective(spec)
    cells = _planned_cells(compare)
    cell_overrides = dict(cells)
    rows = []
    sources = _seed_sources(studies)
    for study_name, study in studies.items():
        for t in study.get_trials(deepcopy=False):
            if t.user_attrs.get("status") in DISCARDED:  # given back by a worker: holds no slot
                continue
            if t.user_attrs.get("source") not in (None, *sources):
                continue  # a seed run of an earlier best, before the sweep grew
            rows.append(_row(name, study_name, t, d, axis_keys, cell_overrides, tuned, objective))
    if not rows:
        raise ConfigError(f"{d}: sweep '{name}' has no trials yet (nothing to report)")
    task = (spec.get("base") or {}).get("task") or {}
    seq_len = task.get("seq_len", _default_seq_len())
    return SweepData(
        name=name,
        dir=d,
        meta=meta,
        spec=spec,
        spec_text=spec_text,
        axes=list(axis_keys),
        axis_keys=axis_keys,
        cells=[c for c, _ in cells] if compare else sorted({r["cell"] for r in rows}),
        tuned=tuned,
        objective=objective,
        direction=direction,
        rows=rows,
        studies=studies,
        train_length=int(seq_len) if seq_len else None,
    )


def _seed_sources(studies: dict[str, Any]) -> set[str]:
    """``study#number`` of each tuning study's best trial(s): what the seed runs rerun now."""
    from bench.sweeps.study import best_trials

    return {
        f"{name}#{t.number}"
        for name, study in studies.items()
        if not name.endswith("/seeds")
        for t in best_trials(study, len(study.directions) > 1)
    }


def _default_seq_len() -> int:
    from bench.config import TaskConfig

    return TaskConfig().seq_len


def _open_storage(d: Path, url: str) -> Any:
    from bench.sweeps.storage import check_storage, is_rdb, open_storage

    if is_rdb(url):
        if "***" in url:
            raise ConfigError(
                f"{d}: the storage URL in {SWEEP_JSON} has a hidden password; pass --storage URL"
            )
        check_storage(url)
    else:
        p = Path(url)
        if not p.is_file():  # the sweep directory may have moved: look beside sweep.json
            p = d / p.name
        if not p.is_file():
            raise ConfigError(f"{d}: storage {url} does not exist (no trials were ever recorded)")
        url = str(p)
    try:
        return open_storage(url)
    except Exception as e:
        from bench import redact

        raise ConfigError(
            redact.text(f"{d}: cannot read storage {url} ({type(e).__name__}: {e})")
        ) from None


def _load_studies(storage: Any, name: str, d: Path) -> dict[str, Any]:
    import optuna

    try:
        names = [n for n in optuna.get_all_study_names(storage) if n.startswith(f"{name}/")]
        return {
            n: optuna.load_study(study_name=n, storage=storage) for n in sorted(names, key=_order)
        }
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ConfigError(f"{d}: unreadable storage ({type(e).__name__}: {first})") from None


def _order(study_name: str) -> tuple[int, str]:
    return (1 if study_name.endswith("/seeds") else 0, study_name)


def _objective(spec: dict[str, Any]) -> tuple[str, str]:
    obj = spec.get("objective") or {}
    if isinstance(obj, list):
        obj = obj[0] if obj else {}
    return str(obj.get("metric", "val/loss")), str(obj.get("direction", "minimize"))


def _planned_cells(compare: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    from bench.sweeps.spec import cell_key

    keys = list(compare)
    return [
        (cell_key(dict(zip(keys, combo, strict=True))), dict(zip(keys, combo, strict=True)))
        for combo in itertools.product(*(compare[k] for k in keys))
    ]


# ----------------------------------------------------------------------------- one trial


def _status(t: Any) -> str:
    """completed / pruned / diverged / failed / running / waiting / ... for a trial."""
    from bench.sweeps.study import outcome

    o = outcome(t)
    return "completed" if o == "complete" else o


def _row(
    sweep: str,
    study_name: str,
    t: Any,
    sweep_dir: Path,
    axis_keys: dict[str, str],
    cell_overrides: dict[str, dict[str, Any]],
    tuned: list[str],
    objective: str,
) -> dict[str, Any]:
    a = t.user_attrs
    phase = str(a.get("phase") or ("seed" if study_name.endswith("/seeds") else "tune"))
    cell = str(a.get("cell") or study_name.split("/tune/")[-1])
    params = dict(t.params)
    if not params and "overrides" in a:
        try:
            params = json.loads(a["overrides"])
        except ValueError:
            params = {}
    fixed = {**cell_overrides.get(cell, {}), **params}
    run_dir = _run_dir(a.get("run_dir"), sweep_dir)
    row: dict[str, Any] = {
        "sweep": sweep,
        "study": study_name,
        "phase": phase,
        "cell": cell,
    }
    for col, key in axis_keys.items():
        v = fixed.get(key)
        row[col] = _fmt(v) if v is not None else ""
    status = _status(t)
    row.update(
        trial=t.number,
        seed=a.get("seed", ""),
        state=t.state.name,
        status=status,
        reason=str(a.get("reason", "") or ""),
    )
    for key in tuned:
        row[key] = fixed.get(key, "")
    if "train.lr" not in tuned:
        row["train.lr"] = fixed.get("train.lr", "")
    row["value"] = float(t.values[0]) if t.values else None
    row["last_step"] = _last_step(t, row["reason"])
    metrics, summary = _metrics(run_dir, a.get("metrics") or {})
    row["learning"] = summary.get("learning") if isinstance(summary.get("learning"), dict) else None
    row["baseline"] = _baseline(summary.get("baseline"))
    row["config"] = run_config(run_dir)
    row["params"] = summary.get("params")
    row["steps"] = summary.get("steps")
    row["wall_time"] = summary.get("wall_time")
    row["has_summary"] = bool(summary)
    row["metrics"] = metrics  # flattened into columns by table_columns()
    row["run_dir"] = str(run_dir) if run_dir else ""
    if status == "completed" and objective not in metrics and row["value"] is None:
        row["status"], row["reason"] = "incomplete", f"no {objective} recorded"
    return row


def _last_step(t: Any, reason: str) -> int | None:
    """The last step a trial reported (Optuna's intermediate values, else its reason)."""
    if t.intermediate_values:
        return int(max(t.intermediate_values))
    m = re.search(r"\bstep (\d+)", reason)
    return int(m.group(1)) if m else None


def _baseline(raw: Any) -> dict[str, float] | None:
    """summary.json's chance levels (finite numbers only); None when not recorded."""
    if not isinstance(raw, dict):
        return None
    return {k: float(v) for k, v in raw.items() if _number(v)}


def run_config(run_dir: Path | None) -> dict[str, Any]:
    """A run's resolved config.yaml as a mapping ({} when absent or unreadable)."""
    if run_dir is None or not (run_dir / CONFIG).is_file():
        return {}
    try:
        cfg = safe_load((run_dir / CONFIG).read_text())
    except Exception:  # an unreadable config must not hide the results
        return {}
    return cfg if isinstance(cfg, dict) else {}


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


def _metrics(run_dir: Path | None, attrs: dict[str, Any]) -> tuple[dict[str, float], dict]:
    """Final metrics (summary.json, else the trial's attribute) + last diagnostics values."""
    metrics = {k: float(v) for k, v in attrs.items() if _number(v)}
    summary: dict[str, Any] = {}
    if run_dir is None or not run_dir.is_dir():
        return metrics, summary
    try:
        summary = read_json(run_dir / SUMMARY)
    except (OSError, ValueError):
        summary = {}
    metrics.update({k: float(v) for k, v in (summary.get("metrics") or {}).items() if _number(v)})
    for key, value in last_values(history(run_dir), DIAGNOSTIC_KEYS).items():
        metrics.setdefault(key, value)
    land = run_dir / DIAGNOSTICS / "landscape_summary.json"
    if land.is_file():
        try:
            extra = json.loads(land.read_text())
            metrics.update({k: float(v) for k, v in extra.items() if _number(v)})
        except (OSError, ValueError):
            pass
    return metrics, summary


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


# ----------------------------------------------------------------------------- run files


def history(run_dir: Path | str | None) -> list[dict[str, float]]:
    """metrics.csv of a run as rows of floats ([] when absent or unreadable)."""
    return read_metrics(Path(run_dir)) if run_dir else []


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
    out = []
    for r in data.rows:
        if r["run_dir"] and (Path(r["run_dir"]) / MANIFEST).is_file():
            try:
                out.append(read_json(Path(r["run_dir"]) / MANIFEST))
            except (OSError, ValueError):
                continue
    return out


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

"""``bench ls [DIR]``: the runs and sweeps under a directory, as one table.

Reads only each run's small files (``status.json``, ``summary.json``,
``manifest.json``, ``config.yaml``) and each sweep's ``sweep.json`` and
``spec.yaml``: never ``metrics.csv``, checkpoints or a study storage, and no
torch, Lightning or Optuna, so listing hundreds of runs takes a moment.

A sweep is one row (its runs summed up) unless DIR is the sweep itself, then
each of its runs is a row. Filters: ``--status``, ``--task`` and ``key=value``
(a config key such as ``model.norm_placement=pre``, or its last part
``norm_placement=pre``; a sweep matches when the value is one it compares).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.config import ConfigError, axes, flatten
from bench.records import fmt_duration
from bench.run import Run
from bench.sweeps.layout import is_sweep_dir, read_sweep_files, read_sweep_json
from bench.sweeps.spec import Objective, SweepSpec

STATUSES = (
    "running",
    "completed",
    "stopped",
    "diverged",
    "failed",
    "interrupted",
    "unknown",
    "done",
    "partial",
    "empty",
)  # runs, then sweeps
SORT_KEYS = ("started", "name", "task", "status", "steps", "best", "duration")


@dataclass
class Entry:
    """One row of ``bench ls``: a run or a sweep."""

    kind: str  # run | sweep
    name: str
    path: Path
    task: str = ""
    what: str = ""  # variant and the axes that differ from the defaults; a sweep: its axes
    status: str = ""
    steps: int | None = None
    best: float | None = None
    metric: str = "val/loss"
    started: float | None = None  # epoch seconds
    duration: float | None = None  # seconds
    fields: dict[str, Any] = field(default_factory=dict)  # flat config (a sweep: its values)


def _epoch(text: Any) -> float | None:
    try:
        return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


def _number(v: Any) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


_DEFAULT_AXES = None


def _axis_defaults() -> dict[str, Any]:
    global _DEFAULT_AXES
    if _DEFAULT_AXES is None:
        from bench.config import ModelConfig

        m = ModelConfig()
        _DEFAULT_AXES = {a: getattr(m, a) for a in axes()}
    return _DEFAULT_AXES


def describe_model(flat: dict[str, Any]) -> str:
    """``llama`` / ``norm_placement=post pos_encoding=rope``: the variant and non-default axes."""
    parts = [str(flat["variant"])] if flat.get("variant") else []
    for axis, default in _axis_defaults().items():
        v = flat.get(f"model.{axis}")
        if v is not None and v != default:
            parts.append(f"{axis}={str(v).lower() if isinstance(v, bool) else v}")
    return " ".join(parts) or "defaults"


def describe_trial(meta: dict[str, Any], flat: dict[str, Any]) -> str:
    """``seed norm_placement=pre seed=2 lr=0.00726``: a sweep run's phase, cell, seed and lr."""
    parts = [str(meta.get("phase", "?")), str(meta.get("cell", ""))]
    if meta.get("phase") == "seed" and "seed" in meta:
        parts.append(f"seed={meta['seed']}")
    lr = _number(flat.get("train.lr"))
    if lr is not None:
        parts.append(f"lr={lr:.3g}")
    return " ".join(p for p in parts if p)


def read_run(run_dir: Path, objective: str = "val/loss") -> Entry:
    """A run directory's row from its small files."""
    run = Run.load(run_dir)
    flat, status, summary, manifest = run.flat_config(), run.status, run.summary, run.manifest
    metrics = summary.get("metrics") or {}
    best = _number(metrics.get(f"best/{objective}", metrics.get(objective)))
    started = _epoch(manifest.get("created"))
    duration = _number(summary.get("wall_time"))
    if duration is None and started is not None and status.get("status") == "running":
        duration = time.time() - started  # so far
    elif duration is None and started is not None and _number(status.get("time")):
        duration = float(status["time"]) - started
    steps = summary.get("steps", status.get("step"))
    return Entry(
        kind="run",
        name=run_dir.name,
        path=run_dir,
        task=str(flat.get("task.name", "")),
        what=describe_model(flat),
        status=str(status.get("status", "unknown")),
        steps=int(n) if (n := _number(steps)) is not None else None,
        best=best,
        metric=objective,
        started=started,
        duration=duration,
        fields=flat,
    )


def _planned(spec: SweepSpec | None) -> int | None:
    """Trials a compare spec plans: cells x (tuning trials + seeds); None when unknown."""
    if spec is None or spec.compare is None:
        return None
    trials = spec.tune.trials if spec.tune is not None else 1
    tuned = sum(key == source for key, source in spec.tuning_source().items())
    return tuned * trials + len(spec.cells()) * (spec.seeds or 0)


def _sweep_files(sweep_dir: Path) -> tuple[dict[str, Any], SweepSpec | None]:
    """``sweep.json`` and the recorded spec (:mod:`bench.sweeps.layout`, the one sweep reader).

    A sweep whose files do not read is still listed, from its runs.
    """
    try:
        return read_sweep_files(sweep_dir)
    except ConfigError:
        pass
    try:
        return read_sweep_json(sweep_dir), None
    except ConfigError:
        return {}, None


def read_sweep(sweep_dir: Path) -> tuple[Entry, list[Entry]]:
    """A sweep's row (its runs summed up) and the rows of its runs."""
    meta, spec = _sweep_files(sweep_dir)
    objective = spec.objectives[0] if spec is not None else Objective()
    metric = objective.metric
    maximize = objective.direction == "maximize"
    runs_dir = sweep_dir / str(meta.get("runs", "runs"))
    runs = (
        [read_run(d, metric) for d in sorted(runs_dir.iterdir()) if d.is_dir()]
        if runs_dir.is_dir()
        else []
    )
    for r in runs:
        meta_fields = {
            k.removeprefix("tracking.meta."): v
            for k, v in r.fields.items()
            if k.startswith("tracking.meta.")
        }
        r.what = describe_trial(meta_fields, r.fields)
    compare = (spec.compare if spec is not None else None) or {}
    searched = list(spec.search.params) if spec is not None and spec.search is not None else []
    fields: dict[str, Any] = flatten(spec.base if spec is not None else {})
    fields.update({k: list(v) for k, v in compare.items()})
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    finished = sum(n for s, n in counts.items() if s not in ("running", "unknown"))
    planned = _planned(spec)
    if counts.get("running"):
        status = "running"
    elif planned is not None and finished < planned:
        status = "partial"
    else:
        status = "done" if runs else "empty"
    status += f" {finished}/{planned if planned is not None else len(runs)}"
    values = [r.best for r in runs if r.best is not None]
    best = (max(values) if maximize else min(values)) if values else None
    started = _epoch(meta.get("created"))
    ends = [
        r.started + r.duration for r in runs if r.started is not None and r.duration is not None
    ]
    axes_text = " x ".join(
        f"{k.removeprefix('model.')}={','.join(_text(x) for x in v)}" for k, v in compare.items()
    ) or ("search " + " ".join(k.removeprefix("model.") for k in searched))
    entry = Entry(
        kind="sweep",
        name=str(meta.get("name", sweep_dir.name)),
        path=sweep_dir,
        task=str(fields.get("task.name", "")),
        what=axes_text,
        status=status,
        steps=sum(r.steps or 0 for r in runs),
        best=best,
        metric=metric,
        started=started,
        duration=(max(ends) - started) if ends and started is not None else None,
        fields=fields,
    )
    return entry, runs


def scan(root: Path) -> list[Entry]:
    """Every sweep and run under ``root`` (a sweep's runs only when ``root`` is that sweep)."""
    if not root.is_dir():
        raise ConfigError(
            f"{root}: no such directory; allowed: a directory of runs (default runs/)"
        )
    if is_sweep_dir(root):
        return read_sweep(root)[1]
    if Run.is_run_dir(root):
        return [read_run(root)]
    return list(_walk(root))


def _walk(d: Path) -> Iterator[Entry]:
    try:
        children = sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return
    for child in children:
        if is_sweep_dir(child):
            yield read_sweep(child)[0]
        elif Run.is_run_dir(child):
            yield read_run(child)
        elif child.name not in ("wandb", "checkpoints", "diagnostics"):
            yield from _walk(child)


# ----------------------------------------------------------------------------- filters


def parse_filters(items: Iterable[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise ConfigError(f"{item!r}: a filter is key=value (e.g. model.norm_placement=pre)")
        out[key] = value
    return out


def _text(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def matches(e: Entry, filters: dict[str, str]) -> bool:
    """Every ``key=value`` holds for the entry (a key may be a config key's last part)."""
    for key, want in filters.items():
        hits = [v for k, v in e.fields.items() if k == key or k.endswith("." + key)]
        if key in ("name", "status", "task", "kind"):
            hits.append(getattr(e, key))
        ok = any(
            want in [_text(x) for x in v] if isinstance(v, list) else _text(v) == want for v in hits
        )
        if not ok:
            return False
    return True


def check_options(status: list[str] | None, sort: str) -> None:
    if sort not in SORT_KEYS:
        raise ConfigError(f"--sort={sort}: allowed: {', '.join(SORT_KEYS)}")
    for s in status or []:
        if s not in STATUSES:
            raise ConfigError(f"--status={s}: allowed: {', '.join(STATUSES)}")


def select(
    entries: list[Entry],
    status: list[str] | None = None,
    task: list[str] | None = None,
    filters: dict[str, str] | None = None,
    sort: str = "started",
    reverse: bool = False,
) -> list[Entry]:
    """Filter and sort; ``status`` matches a run's status or a sweep's first word."""
    check_options(status, sort)
    out = [
        e
        for e in entries
        if (not status or e.status.split()[0] in status)
        and (not task or e.task in task)
        and matches(e, filters or {})
    ]

    def key(e: Entry) -> tuple:
        v = getattr(e, sort)
        return (v is None, v if v is not None else 0)

    out.sort(key=key, reverse=reverse)
    return out


# ----------------------------------------------------------------------------- table


def _age(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def table(entries: list[Entry], root: Path) -> Any:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    t = Table(title=escape(f"{len(entries)} under {root}"), title_justify="left")
    for col in (
        "name",
        "kind",
        "task",
        "variant / axes",
        "status",
        "steps",
        "best",
        "started",
        "duration",
    ):
        t.add_column(col, justify="right" if col in ("steps", "best", "duration") else "left")
    for e in entries:
        name = (
            str(e.path.relative_to(root))
            if e.path.is_relative_to(root) and e.path != root
            else e.name
        )
        best = "-" if e.best is None else f"{e.best:.4g}"
        cells = (
            name or e.name,
            e.kind,
            e.task or "-",
            e.what,
            e.status,
            "-" if e.steps is None else str(e.steps),
            best if e.best is None else f"{best} {e.metric}" if e.metric != "val/loss" else best,
            _age(e.started),
            fmt_duration(e.duration),
        )
        t.add_row(*(Text(c) for c in cells))  # names are text, never rich markup
    return t


def list_runs(
    root: str | Path,
    status: list[str] | None = None,
    task: list[str] | None = None,
    filters: Iterable[str] = (),
    sort: str = "started",
    reverse: bool = False,
) -> int:
    """Print the table of runs and sweeps under ``root``; returns an exit code."""
    import sys

    from rich.console import Console

    root = Path(root)
    check_options(status, sort)
    wanted = parse_filters(filters)
    chosen = select(scan(root), status, task, wanted, sort, reverse)
    console = Console(width=None if sys.stdout.isatty() else 200)
    if not chosen:
        console.print(f"no runs or sweeps under {root} match")
        return 0
    console.print(table(chosen, root))
    return 0


__all__ = ["Entry", "list_runs", "read_run", "read_sweep", "scan", "select"]

"""Whole W&B offline runs, folded from the records of their ``run-*.wandb`` files (a test helper).

:func:`read_run` folds :func:`bench.wandb_file.iter_records` into an
:class:`OfflineRun` (config, history rows, final summary, metric definitions,
tags, exit code, files and artifacts); :func:`find_run_files` finds the files
under a directory. The tests read what bench logged to W&B through these, with
no W&B server and no mocks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

from bench.wandb_file import iter_records

STEP_KEY = "trainer/global_step"  # Lightning's x-axis for every metric


def find_run_files(root: str | Path) -> list[Path]:
    """Every ``run-*.wandb`` file under ``root`` (each once, sorted by path).

    wandb's ``latest-run`` symlink is skipped so a run is not found twice.
    """
    found: dict[Path, Path] = {}
    for p in sorted(Path(root).rglob("run-*.wandb")):
        if any(part == "latest-run" for part in p.parts):
            continue
        found.setdefault(p.resolve(), p)
    return sorted(found.values())


# ----------------------------------------------------------------------------- values


def _decode_json(text: str) -> Any:
    """W&B's ``value_json``; non-standard floats (NaN, Infinity) included."""
    return json.loads(text) if text else None


def _item_path(item: Any) -> list[str]:
    """The key of a config/summary/history item: ``key`` or a ``nested_key`` path."""
    return list(item.nested_key) if item.nested_key else [item.key]


def _history_value(item: pb.HistoryItem) -> Any:
    if item.value_json:
        return _decode_json(item.value_json)
    typed = item.WhichOneof("value")  # newer writers may use typed values
    if typed is None or typed == "none":
        return None
    value = getattr(item, typed)
    return _decode_json(value) if typed == "json" else value


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        nxt = target.get(key)
        if not isinstance(nxt, dict):
            nxt = target[key] = {}
        target = nxt
    target[path[-1]] = value


def _remove_path(target: dict[str, Any], path: list[str]) -> None:
    for key in path[:-1]:
        target = target.get(key)
        if not isinstance(target, dict):
            return
    target.pop(path[-1], None)


def _apply(target: dict[str, Any], record: Any) -> None:
    """Apply a ConfigRecord/SummaryRecord (updates and removals) to a dict."""
    for item in record.update:
        _set_path(target, _item_path(item), _decode_json(item.value_json))
    for item in record.remove:
        _remove_path(target, _item_path(item))


# ----------------------------------------------------------------------------- runs


@dataclass
class MetricDef:
    """A ``define_metric`` call as recorded: name (or glob), x-axis, summaries."""

    name: str
    step_metric: str | None = None
    summary: list[str] = field(default_factory=list)  # e.g. ["min"]; [] = W&B default
    goal: str | None = None  # "minimize" / "maximize"
    hidden: bool = False
    is_glob: bool = False


@dataclass
class OfflineRun:
    """What one W&B offline run recorded, folded from its ``.wandb`` file.

    ``config`` has W&B's flat keys (``model.pos_encoding``) with decoded values,
    without W&B's internal ``_wandb`` entry. ``history`` holds one dict per
    ``log`` call (with ``_step``, ``_runtime``, ``_timestamp`` and, for
    Lightning, ``trainer/global_step``); nested logged dicts and media stay
    nested (``row["img"]["_type"] == "image-file"``). ``summary`` is the final
    summary: a metric defined with ``summary="min"`` appears as
    ``{"min": value}``. ``exit_code`` is None when the run never finished
    (crashed or still running).
    """

    path: Path
    run_id: str = ""
    project: str = ""
    entity: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    notes: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metric_defs: dict[str, MetricDef] = field(default_factory=dict)
    exit_code: int | None = None
    start_time: float | None = None
    files: list[str] = field(default_factory=list)  # paths relative to the run's files/
    artifacts: list[dict[str, Any]] = field(default_factory=list)  # name, type, files

    @property
    def finished(self) -> bool:
        """True once the run wrote its exit record (``wandb.finish``)."""
        return self.exit_code is not None

    @property
    def run_dir(self) -> Path:
        """The ``offline-run-*`` directory (holds ``files/`` with media)."""
        return self.path.parent

    @property
    def media_keys(self) -> list[str]:
        """History keys whose values are W&B media (images, tables, ...)."""
        keys = {
            k
            for row in self.history
            for k, v in row.items()
            if isinstance(v, dict) and isinstance(v.get("_type"), str)
        }
        return sorted(keys)

    def series(self, key: str, step_key: str = STEP_KEY) -> list[tuple[Any, Any]]:
        """``(step, value)`` for every history row that logged ``key``.

        ``step`` is ``row[step_key]`` when present, else W&B's ``_step``.
        """
        return [
            (row.get(step_key, row.get("_step")), row[key]) for row in self.history if key in row
        ]


def _on_run(run: OfflineRun, r: pb.RunRecord) -> None:
    run.run_id = r.run_id or run.run_id
    run.project = r.project or run.project
    run.entity = r.entity or run.entity
    run.name = r.display_name or run.name
    run.group = r.run_group or run.group
    run.job_type = r.job_type or run.job_type
    run.notes = r.notes or run.notes
    if r.tags:
        run.tags = list(r.tags)
    if r.HasField("start_time"):
        run.start_time = r.start_time.seconds + r.start_time.nanos / 1e9
    _apply(run.config, r.config)
    _apply(run.summary, r.summary)


def _on_history(run: OfflineRun, r: pb.HistoryRecord) -> None:
    row: dict[str, Any] = {}
    for item in r.item:
        path = _item_path(item)
        _set_path(row, path, _history_value(item))
    if "_step" not in row and r.HasField("step"):
        row["_step"] = r.step.num
    run.history.append(row)


def _on_metric(run: OfflineRun, r: pb.MetricRecord) -> None:
    name = r.name or r.glob_name
    if not name:
        return
    aggregations = [f.name for f, on in r.summary.ListFields() if on]
    goal = {1: "minimize", 2: "maximize"}.get(r.goal)
    old = run.metric_defs.get(name)
    # define_metric merges with earlier calls for the same name unless overwritten.
    run.metric_defs[name] = MetricDef(
        name=name,
        step_metric=r.step_metric or (old.step_metric if old else None),
        summary=aggregations or (old.summary if old else []),
        goal=goal or (old.goal if old else None),
        hidden=r.options.hidden,
        is_glob=bool(r.glob_name) and not r.name,
    )


def _on_files(run: OfflineRun, r: pb.FilesRecord) -> None:
    for item in r.files:
        if item.path not in run.files:
            run.files.append(item.path)


def _on_artifact(run: OfflineRun, r: pb.ArtifactRecord) -> None:
    files = [entry.path for entry in r.manifest.contents]
    run.artifacts.append({"name": r.name, "type": r.type, "files": files})


def _on_exit(run: OfflineRun, r: pb.RunExitRecord) -> None:
    run.exit_code = r.exit_code


# One handler per record type; types not listed (telemetry, stats, output, ...) are skipped.
_HANDLERS = {
    "run": _on_run,
    "config": lambda run, r: _apply(run.config, r),
    "history": _on_history,
    "summary": lambda run, r: _apply(run.summary, r),
    "metric": _on_metric,
    "files": _on_files,
    "artifact": _on_artifact,
    "exit": _on_exit,
}


def read_run(path: str | Path) -> OfflineRun:
    """Fold a ``run-*.wandb`` file into an :class:`OfflineRun`.

    ``path`` may also be an ``offline-run-*`` directory or any directory with
    exactly one run file under it (e.g. a bench run directory).
    """
    path = Path(path)
    if path.is_dir():
        files = find_run_files(path)
        if len(files) != 1:
            raise FileNotFoundError(f"{path}: expected one run-*.wandb file, found {len(files)}")
        path = files[0]
    run = OfflineRun(path=path)
    for record in iter_records(path):
        kind = record.WhichOneof("record_type")
        handler = _HANDLERS.get(kind or "")
        if handler is not None:
            handler(run, getattr(record, kind))
    run.config.pop("_wandb", None)  # W&B's own bookkeeping, not the run's config
    return run

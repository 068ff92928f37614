"""Read W&B offline run files (``run-*.wandb``) without W&B's servers.

wandb 0.31 writes every offline run to
``<dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb`` and ships no Python reader
for it. The format (from wandb-core's ``stream/store.go`` and ``pkg/leveldb``,
checked against files this version writes):

- a 7-byte file header: ``b":W&B"``, uint16 LE magic ``0xBEE1``, version byte 0;
- then the LevelDB log format, counted from the start of the file (so block 0
  holds the header and 32 761 bytes of chunks): 32 KiB blocks of chunks, each
  with a 7-byte header (uint32 LE crc, uint16 LE length, uint8 type
  full=1/first=2/middle=3/last=4) and its payload. Chunks never cross blocks;
  fewer than 7 bytes left in a block are zero padding.
- the crc is the plain IEEE CRC-32 (``zlib.crc32``) of the type byte and the
  payload, *not* LevelDB's masked CRC-32C (wandb-core selects ``CRCAlgoIEEE``).
- each record is a serialized ``wandb.proto.wandb_internal_pb2.Record``.

A crashed run leaves a file that stops mid-chunk or mid-record: :func:`iter_records`
ends quietly there. A checksum mismatch or a malformed chunk inside the file
raises :class:`CorruptRunFileError`.

The report and tests use :func:`read_run`, which folds the records into an
:class:`OfflineRun` (config, history rows, final summary, metric definitions,
tags, exit code, files and artifacts).
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from wandb.proto import wandb_internal_pb2 as pb

FILE_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER = struct.Struct("<IHB")  # crc32, payload length, chunk type
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
STEP_KEY = "trainer/global_step"  # Lightning's x-axis for every metric


class CorruptRunFileError(ValueError):
    """A ``.wandb`` file that is not a W&B run file, or is damaged inside."""


# ----------------------------------------------------------------------------- low level


def _iter_payloads(f: BinaryIO, path: Path) -> Iterator[bytes]:
    """Reassembled record payloads of an open ``.wandb`` file, in order."""
    head = f.read(len(FILE_HEADER))
    if head != FILE_HEADER[: len(head)]:
        raise CorruptRunFileError(f"{path}: not a W&B run file (header {head!r})")
    if len(head) < len(FILE_HEADER):
        return  # crashed before the header was complete: no records
    block_start, pos = 0, len(FILE_HEADER)
    block = head + f.read(BLOCK_SIZE - len(head))
    parts: list[bytes] = []
    while True:
        if pos + CHUNK_HEADER.size > len(block):
            if len(block) < BLOCK_SIZE:
                return  # end of file (a partial chunk header here is a crashed write)
            block_start += BLOCK_SIZE
            block, pos = f.read(BLOCK_SIZE), 0
            if not block:
                return
            continue
        crc, length, kind = CHUNK_HEADER.unpack_from(block, pos)
        where = block_start + pos
        if crc == 0 and length == 0 and kind == 0:
            pos = len(block)  # zero padding to the end of the block
            continue
        start, end = pos + CHUNK_HEADER.size, pos + CHUNK_HEADER.size + length
        if end > len(block):
            if len(block) < BLOCK_SIZE:
                return  # the last chunk was cut short: a crashed run, keep what we have
            raise CorruptRunFileError(f"{path}: chunk at byte {where} overflows its block")
        payload = block[start:end]
        if zlib.crc32(block[start - 1 : end]) != crc:
            raise CorruptRunFileError(f"{path}: checksum mismatch in chunk at byte {where}")
        if kind not in (FULL, FIRST, MIDDLE, LAST):
            raise CorruptRunFileError(f"{path}: unknown chunk type {kind} at byte {where}")
        if (kind in (FULL, FIRST)) == bool(parts):  # a record starts mid-record, or vice versa
            raise CorruptRunFileError(f"{path}: chunk type {kind} out of order at byte {where}")
        pos = end
        if kind == FULL:
            yield payload
        elif kind == LAST:
            yield b"".join([*parts, payload])
            parts = []
        else:
            parts.append(payload)


def iter_records(path: str | Path) -> Iterator[pb.Record]:
    """Every ``Record`` in a ``run-*.wandb`` file, in the order written.

    A file cut short by a crash (a partial last chunk or an unfinished
    multi-chunk record) yields the complete records before the cut.

    Raises:
        CorruptRunFileError: wrong file header, checksum mismatch, a malformed
            chunk or a payload that is not a ``Record``.
    """
    path = Path(path)
    with path.open("rb") as f:
        for payload in _iter_payloads(f, path):
            record = pb.Record()
            try:
                record.ParseFromString(payload)
            except Exception as e:  # protobuf's DecodeError
                raise CorruptRunFileError(f"{path}: undecodable record ({e})") from None
            yield record


def wait_until_closed(path: str | Path, timeout: float = 30.0, poll: float = 0.01) -> bool:
    """Wait until a run file holds its exit record; True if it does within ``timeout``.

    wandb-core buffers the file in 32 KiB blocks and writes the last one when it
    closes the run's stream, a moment *after* ``run.finish()`` returns. The file
    is only re-read when its size changes.
    """
    path = Path(path)
    deadline = time.monotonic() + timeout
    last_size = -1
    while True:
        size = path.stat().st_size if path.exists() else -1
        if size != last_size:
            last_size = size
            try:
                if size > 0 and any(r.HasField("exit") for r in iter_records(path)):
                    return True
            except CorruptRunFileError:
                pass  # mid-write; look again when the size changes
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


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

"""``bench export SWEEP --format csv|jsonl|parquet``: one row per run, the report's table.

The rows and columns are exactly the report's ``runs.csv``
(:func:`bench.report.collect.flat_rows`): the cell and its axis values, phase,
trial, seed, status and reason, learning verdict, tuned parameters, the
objective, final metrics and the last value of each diagnostic (gradient norm,
Hessian, throughput, landscape), steps, wall time, run directory. CSV and JSON
Lines need only the standard library; Parquet needs pyarrow (the ``parquet`` extra)
and says so in one line when it is missing. No torch or Lightning.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from bench.config import ConfigError
from bench.extras import require
from bench.io import atomic_path

FORMATS = ("csv", "jsonl", "parquet")


def _plain(v: Any) -> Any:
    """JSON-safe: NaN and infinities become null."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def jsonl_text(cols: list[str], rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps({c: _plain(r[c]) for c in cols}, default=str) + "\n" for r in rows)


def _pyarrow() -> Any:
    """pyarrow, or one line naming the extra that installs it (the ``parquet`` extra)."""
    require("pyarrow.parquet", "--format parquet", "allowed without it: csv, jsonl")
    return require("pyarrow", "--format parquet")


def check(fmt: str, out: str | None) -> None:
    """Every option problem, before the sweep is read."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format {fmt}: allowed: {', '.join(FORMATS)}")
    if fmt == "parquet":
        _pyarrow()
        if out == "-":
            raise ConfigError("--out -: Parquet is binary; give a file path")
    if out not in (None, "-"):
        p = Path(out)
        if p.is_dir() or not p.parent.is_dir():
            raise ConfigError(f"--out {out}: allowed: a file path in an existing directory")


def write_parquet(path: Path, cols: list[str], rows: list[dict[str, Any]]) -> None:
    pa = _pyarrow()
    import pyarrow.parquet as pq

    # Mixed columns (e.g. seed: int or ""): a column that is not all numbers is text.
    data = {}
    for c in cols:
        values = [r[c] for r in rows]
        numeric = all(v is None or isinstance(v, int | float) for v in values)
        data[c] = values if numeric else [None if v is None else str(v) for v in values]
    with atomic_path(path) as tmp:
        pq.write_table(pa.table(data), str(tmp))


def export(sweep_dir: str, fmt: str, out: str | None = None, storage: str | None = None) -> int:
    """Write the sweep's runs table; prints where (or the table itself for ``--out -``)."""
    from bench.sweeps.layout import open_sweep_dir

    check(fmt, out)
    open_sweep_dir(sweep_dir, storage)  # a wrong directory is refused before Optuna loads
    from bench.records import atomic_write
    from bench.report.collect import flat_rows, load_sweep, runs_csv
    from bench.sweeps.storage import quiet_optuna

    quiet_optuna()
    data = load_sweep(sweep_dir, storage)
    cols, rows = flat_rows(data)
    text = runs_csv(data) if fmt == "csv" else jsonl_text(cols, rows) if fmt == "jsonl" else None
    if out == "-":
        sys.stdout.write(text or "")
        return 0
    path = Path(out) if out else Path(f"{data.name}-runs.{fmt}")
    if text is None:
        write_parquet(path, cols, rows)
    else:
        atomic_write(path, text)
    print(f"{path}  ({len(rows)} runs x {len(cols)} columns)")
    return 0

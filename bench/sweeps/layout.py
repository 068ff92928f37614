"""The sweep directory: ``spec.yaml``, ``sweep.json``, ``journal.log``, ``runs/``, ``workers/``.

``sweep.json`` marks a directory as a sweep (name, storage, created, command) so
``bench status`` / ``bench report`` find everything from the directory alone.
:func:`prepare_sweep` validates the spec and reaches the storage *before* it
creates anything; rerunning it on an existing sweep directory resumes that sweep.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna

from bench import records
from bench import redact as hide
from bench.config import ConfigError, read_text_file
from bench.sweeps import tuning
from bench.sweeps.spec import SweepSpec, load_spec, slug
from bench.sweeps.storage import check_storage, default_storage, is_rdb, open_storage, redact
from bench.sweeps.study import create_studies

SWEEP_JSON = "sweep.json"
SPEC_YAML = "spec.yaml"
RUNS = "runs"
WORKERS = "workers"
DEFAULT_ROOT = Path("runs") / "sweeps"


@dataclass(frozen=True)
class Sweep:
    """A prepared sweep: its validated spec, its directory and its storage URL."""

    spec: SweepSpec
    dir: Path
    storage_url: str

    def open_storage(self) -> optuna.storages.BaseStorage:
        return open_storage(self.storage_url, self.spec.retry)

    def run_dir(self, phase: str, cell: str, number: int) -> Path:
        """``runs/{phase}-{cell}-t{number}``: one directory per trial (retries get their own)."""
        return self.dir / RUNS / f"{phase}-{slug(cell)}-t{number:04d}"

    def worker_file(self, worker_id: str) -> Path:
        return self.dir / WORKERS / f"{worker_id}.json"


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_JSON).is_file()


def read_sweep_json(sweep_dir: Path) -> dict:
    """``sweep.json`` as a dict; a file that is not a JSON object is a one-line ConfigError."""
    path = sweep_dir / SWEEP_JSON
    try:
        meta = json.loads(read_text_file(path, "sweep.json"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("storage", ""), str):
        raise ConfigError(f"{path}: expected a JSON object with a 'storage' string")
    return meta


def resolve_spec(spec_path: str | Path) -> tuple[SweepSpec, Path | None]:
    """Load a spec file, or the ``spec.yaml`` of a sweep directory (returned as second item)."""
    p = Path(spec_path)
    if p.is_dir():
        if not is_sweep_dir(p):
            raise ConfigError(f"{p}: not a sweep directory (no {SWEEP_JSON}) and not a spec file")
        return load_spec(p / SPEC_YAML), p
    return load_spec(p), None


def prepare_sweep(
    spec_path: str | Path,
    storage: str | None = None,
    out: str | Path | None = None,
    command: str | None = None,
    check_data: bool = True,
    extend: bool = False,
) -> Sweep:
    """Validate, then create or reopen the sweep directory and its studies.

    ``check_data``: also build every cell's data first (see
    :func:`bench.sweeps.preflight.check_cells`); workers the launcher starts skip it.
    ``extend``: accept a spec that adds to the sweep's (see :mod:`bench.sweeps.grow`).
    """
    spec, from_dir = resolve_spec(spec_path)
    if check_data:
        from bench.sweeps.preflight import check_cells

        check_cells(spec, str(spec_path))
    sweep_dir = Path(out) if out is not None else (from_dir or DEFAULT_ROOT / spec.name)
    recorded = None
    growth: list = []
    if is_sweep_dir(sweep_dir):
        meta = read_sweep_json(sweep_dir)
        recorded = meta.get("storage")
        old = (sweep_dir / SPEC_YAML).read_text() if (sweep_dir / SPEC_YAML).is_file() else None
        if old is not None and old != spec.dump():
            from bench.sweeps.grow import check_growth

            old_spec = load_spec(sweep_dir / SPEC_YAML)
            name = str(meta.get("name", old_spec.name))
            growth = check_growth(old_spec, spec, str(sweep_dir), name, extend)
    elif sweep_dir.exists() and not sweep_dir.is_dir():
        raise ConfigError(f"out={sweep_dir}: exists and is not a directory")
    elif sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise ConfigError(f"out={sweep_dir}: exists and is not a sweep directory")
    if storage is None and recorded is not None:
        if "***" in recorded:
            raise ConfigError(
                f"out={sweep_dir}: its storage URL has a hidden password; pass --storage URL"
            )
        url = recorded
    else:
        url = storage or default_storage(sweep_dir)
    check_storage(url)

    # Everything is valid: now create.
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / RUNS).mkdir(exist_ok=True)
    (sweep_dir / WORKERS).mkdir(exist_ok=True)
    records.atomic_write(sweep_dir / SPEC_YAML, spec.dump())
    if growth:  # sweep.json says what the sweep is now, and when it grew
        meta = read_sweep_json(sweep_dir)
        meta.update(seeds=spec.seeds, tuning=tuning.describe(spec))
        meta.setdefault("extended", []).append(
            {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changes": [c.line() for c in growth]}
        )
        records.write_json(sweep_dir / SWEEP_JSON, meta)
    if not is_sweep_dir(sweep_dir):
        records.write_json(
            sweep_dir / SWEEP_JSON,
            {
                "name": spec.name,
                "mode": "search" if spec.search is not None else "compare",
                "tuning": tuning.describe(spec),
                "pruner": spec.effective_pruner,
                "seeds": spec.seeds,
                "storage": redact(url),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "command": hide.text(command)
                if command
                else hide.command([Path(sys.argv[0]).name, *sys.argv[1:]]),
                "spec": SPEC_YAML,
                "runs": RUNS,
            },
        )
    sweep = Sweep(spec, sweep_dir, url)
    create_studies(sweep.open_storage(), spec)
    return sweep


def open_sweep_dir(sweep_dir: str | Path, storage: str | None = None) -> Sweep:
    """An existing sweep from its directory (for status, dashboard, report)."""
    d = Path(sweep_dir)
    if not is_sweep_dir(d):
        raise ConfigError(f"{d}: not a sweep directory (no {SWEEP_JSON})")
    meta = read_sweep_json(d)
    url = storage or meta["storage"]
    if is_rdb(url) and "***" in url:
        raise ConfigError(f"{d}: the storage URL has a hidden password; pass --storage URL")
    check_storage(url)
    return Sweep(load_spec(d / SPEC_YAML), d, url)

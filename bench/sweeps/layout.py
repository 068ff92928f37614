"""The sweep directory: ``spec.yaml``, ``sweep.json``, ``journal.log``, ``runs/``, ``workers/``.

``sweep.json`` marks a directory as a sweep (name, storage, created, command) so
``bench status`` / ``bench report`` find everything from the directory alone.
:func:`prepare_sweep` validates the spec and reaches the storage *before* it
creates anything; rerunning it on an existing sweep directory resumes that sweep.

This module is also the one reader of an existing sweep directory:
:func:`open_sweep_dir` (the typed spec, ``sweep.json`` and the storage URL, for
``bench status``, ``dashboard``, ``report``, ``export``, ``reproduce`` and the
sweep-level W&B run) and :func:`read_sweep_files` (the two files only, for
``bench ls`` and ``compare``). It loads no Optuna until a storage is opened.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import records
from bench import redact as hide
from bench.config import ConfigError, read_text_file
from bench.sweeps.spec import SweepSpec, load_spec, slug

if TYPE_CHECKING:
    import optuna

SWEEP_JSON = "sweep.json"
SPEC_YAML = "spec.yaml"
RUNS = "runs"
WORKERS = "workers"
DEFAULT_ROOT = Path("runs") / "sweeps"


@dataclass(frozen=True)
class Sweep:
    """A sweep: its validated spec, its directory and its storage URL."""

    spec: SweepSpec
    dir: Path
    storage_url: str

    def record(self) -> dict[str, Any]:
        """``sweep.json``: name, mode, tuning, storage (password hidden), created, command."""
        return read_sweep_json(self.dir)

    @property
    def spec_path(self) -> Path:
        return self.dir / str(self.record().get("spec", SPEC_YAML))

    def spec_text(self) -> str:
        """``spec.yaml`` as written (what the report shows and ``bench sweep`` reruns)."""
        return read_text_file(self.spec_path, "sweep spec")

    def open_storage(self) -> optuna.storages.BaseStorage:
        from bench.sweeps.storage import open_storage

        return open_storage(self.storage_url, self.spec.retry)

    def studies(self) -> dict[str, optuna.Study]:
        """The sweep's studies in its storage, in spec order (tuning, then seeds)."""
        from bench.sweeps.trials import load_studies

        return load_studies(self.open_storage(), self.spec)

    def run_dir(self, phase: str, cell: str, number: int) -> Path:
        """``runs/{phase}-{cell}-t{number}``: one directory per trial (retries get their own)."""
        return self.dir / RUNS / f"{phase}-{slug(cell)}-t{number:04d}"

    def worker_file(self, worker_id: str) -> Path:
        return self.dir / WORKERS / f"{worker_id}.json"


def is_sweep_dir(path: str | Path) -> bool:
    return (Path(path) / SWEEP_JSON).is_file()


def sweep_or_storage(target: str | Path, journal_file: bool = False) -> Path | str:
    """``target`` as a sweep directory (a Path) or a storage URL (a str; with
    ``journal_file``, also a journal file's path); anything else is a one-line ConfigError.

    Plain file checks (no Optuna): ``bench status`` and ``bench dashboard`` refuse a
    wrong path before they load it.
    """
    if is_sweep_dir(target):
        return Path(target)
    url = str(target)
    if "://" in url or (journal_file and Path(url).is_file()):
        return url
    journal = " / journal file" if journal_file else ""
    raise ConfigError(
        f"{target}: neither a sweep directory (with {SWEEP_JSON}) nor a storage URL{journal}"
    )


def read_sweep_json(sweep_dir: Path) -> dict[str, Any]:
    """``sweep.json`` as a dict; a file that is not a JSON object is a one-line ConfigError."""
    path = sweep_dir / SWEEP_JSON
    try:
        meta = json.loads(read_text_file(path, "sweep.json"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON (line {e.lineno}: {e.msg})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("storage", ""), str):
        raise ConfigError(f"{path}: expected a JSON object with a 'storage' string")
    return meta


def read_sweep_files(sweep_dir: str | Path) -> tuple[dict[str, Any], SweepSpec]:
    """``sweep.json`` and the spec the sweep recorded (typed), without its storage.

    The spec is read as a record (:func:`bench.sweeps.spec.parse_spec` ``recorded``),
    so a sweep made by an earlier bench still reads. ConfigError (one line) when
    the directory is not a readable sweep.
    """
    d = Path(sweep_dir)
    if not d.exists():
        raise ConfigError(f"{d}: no such directory; expected a sweep directory")
    if not is_sweep_dir(d):
        raise ConfigError(f"{d}: not a sweep directory (no {SWEEP_JSON})")
    meta = read_sweep_json(d)
    spec = load_spec(d / str(meta.get("spec", SPEC_YAML)), recorded=True)
    return meta, spec


def open_sweep_dir(sweep_dir: str | Path, storage: str | None = None) -> Sweep:
    """An existing sweep from its directory (status, dashboard, report, export, W&B).

    ``storage``: the storage URL, when sweep.json's is not usable here (an RDB URL
    is recorded with its password hidden). A journal file that is not where
    sweep.json says is looked for beside it (the directory was moved or copied).
    """
    d = Path(sweep_dir)
    meta, spec = read_sweep_files(d)
    if "storage" not in meta:
        raise ConfigError(f"{d / SWEEP_JSON}: expected a JSON object with a 'storage' string")
    return Sweep(spec, d, _storage_url(d, storage or meta["storage"]))


def _storage_url(d: Path, url: str) -> str:
    """A usable storage URL for the sweep in ``d``; ConfigError when there is none."""
    from bench.sweeps.storage import check_storage, is_rdb

    if is_rdb(url):
        if "***" in url:
            raise ConfigError(
                f"{d}: the storage URL in {SWEEP_JSON} has a hidden password; pass --storage URL"
            )
        check_storage(url)
        return url
    p = Path(url)
    if not p.is_file():  # the sweep directory may have moved: look beside sweep.json
        p = d / p.name
    if not p.is_file():
        raise ConfigError(f"{d}: storage {url} does not exist (no trials were ever recorded)")
    return str(p)


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
    from bench.sweeps.storage import check_storage
    from bench.sweeps.study import create_studies

    spec, from_dir = resolve_spec(spec_path)
    if check_data:
        from bench.sweeps.preflight import check_cells

        check_cells(spec, str(spec_path))
    sweep_dir = Path(out) if out is not None else (from_dir or DEFAULT_ROOT / spec.name)
    recorded, growth = _check_target(sweep_dir, spec, extend)
    url = _chosen_storage(sweep_dir, storage, recorded)
    check_storage(url)

    # Everything is valid: now create.
    _write_sweep_dir(sweep_dir, spec, url, growth, command)
    sweep = Sweep(spec, sweep_dir, url)
    create_studies(sweep.open_storage(), spec)
    return sweep


def _check_target(sweep_dir: Path, spec: SweepSpec, extend: bool) -> tuple[str | None, list]:
    """Whether ``sweep_dir`` may hold this sweep: (the storage URL its sweep.json records,
    the changes of a grown spec). A new directory must be absent or empty; an existing
    sweep's spec may only change as :mod:`bench.sweeps.grow` allows."""
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
    return recorded, growth


def _chosen_storage(sweep_dir: Path, storage: str | None, recorded: str | None) -> str:
    """The storage URL: the one given, else the one the sweep recorded, else the default."""
    from bench.sweeps.storage import default_storage

    if storage is None and recorded is not None:
        if "***" in recorded:
            raise ConfigError(
                f"out={sweep_dir}: its storage URL has a hidden password; pass --storage URL"
            )
        return recorded
    return storage or default_storage(sweep_dir)


def _write_sweep_dir(
    sweep_dir: Path, spec: SweepSpec, url: str, growth: list, command: str | None
) -> None:
    """Create the directory, write spec.yaml, and write sweep.json (a new sweep) or record
    in it that the sweep grew."""
    from bench.sweeps import tuning
    from bench.sweeps.storage import redact

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

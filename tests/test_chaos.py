"""tools/chaos.py's checks find what a chaos run must not leave behind.

Planted on real storages (a journal file; a PostgreSQL database when the server is
up): a planned trial lost, one complete twice, a failed trial without a reason, a
trial left running, and run directories that look finished but are not whole.
No training: the trials and run directories are written as the sweep would.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from sweep_helpers import fresh_database, require_postgres

from bench.sweeps.storage import open_storage

_SPEC = importlib.util.spec_from_file_location(
    "chaos", Path(__file__).resolve().parent.parent / "tools" / "chaos.py"
)
assert _SPEC is not None and _SPEC.loader is not None
chaos = importlib.util.module_from_spec(_SPEC)
sys.modules["chaos"] = chaos  # its dataclasses look their module up
_SPEC.loader.exec_module(chaos)

SPEC = chaos.chaos_spec(4)  # 2 cells x 2 learning rates: 4 planned trials
GRID = SPEC["tune"]["params"]["train.lr"]["choices"]
PRE, POST = (f"chaos/tune/norm_placement={c}" for c in ("pre", "post"))


def _whole_run(run_dir: Path, val_loss: float) -> Path:
    """A run directory as a completed run leaves it."""
    run_dir.mkdir(parents=True)
    for name in ("config.yaml", "metrics.csv", "manifest.json"):
        (run_dir / name).write_text("x\n")
    (run_dir / "status.json").write_text(json.dumps({"status": "completed"}))
    summary = {"status": "completed", "metrics": {"val/loss": val_loss}}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    return run_dir


def _add(study: optuna.Study, lr: float, state: TrialState, run_dir: Path | None = None,
         **attrs: object) -> None:  # fmt: skip
    if run_dir is not None:
        attrs["run_dir"] = str(run_dir)
        attrs.setdefault("metrics", {"val/loss": 1.0})
    study.add_trial(
        create_trial(
            params={"train.lr": lr},
            distributions={"train.lr": CategoricalDistribution(GRID)},
            value=1.0 if state == TrialState.COMPLETE else None,
            state=state,
            user_attrs=attrs,
        )
    )


def _studies(url: str) -> tuple[optuna.Study, optuna.Study]:
    storage = open_storage(url)
    return tuple(optuna.create_study(study_name=n, storage=storage) for n in (PRE, POST))  # type: ignore[return-value]


def _storages(tmp_path: Path, which: str):
    if which == "journal":
        yield str(tmp_path / "journal.log")
        return
    require_postgres()
    with fresh_database() as url:
        yield url


@pytest.fixture(params=["journal", "postgresql"])
def storage_url(request, tmp_path):
    yield from _storages(tmp_path, request.param)


def test_a_clean_sweep_passes(tmp_path, storage_url):
    pre, post = _studies(storage_url)
    runs = tmp_path / "runs"
    for study, cell in ((pre, "pre"), (post, "post")):
        for i, lr in enumerate(GRID):
            # a killed attempt (no summary.json), its reason recorded, then its retry
            (runs / f"{cell}-dead{i}").mkdir(parents=True)
            _add(study, lr, TrialState.FAIL, reason="worker 3 died (signal SIGKILL)")
            _add(study, lr, TrialState.COMPLETE, _whole_run(runs / f"{cell}-t{i}", 1.0))
    found = chaos.check_sweep(tmp_path, storage_url, SPEC)
    assert found.ok, found
    assert (found.planned, found.complete) == (4, 4)
    assert found.failed_attempts == {"worker died": 4}


def test_lost_duplicated_unexplained_unfinished_and_half_written_are_all_found(
    tmp_path, storage_url
):
    pre, post = _studies(storage_url)
    runs = tmp_path / "runs"
    _add(pre, GRID[0], TrialState.COMPLETE, _whole_run(runs / "a", 1.0))
    _add(pre, GRID[1], TrialState.COMPLETE, _whole_run(runs / "b1", 1.0))
    _add(pre, GRID[1], TrialState.COMPLETE, _whole_run(runs / "b2", 1.0))  # twice
    _add(post, GRID[0], TrialState.FAIL, reason="")  # no reason, and never retried: lost
    half = _whole_run(runs / "d", 1.0)
    (half / "status.json").write_text(json.dumps({"status": "running"}))  # cut mid-finish
    (half / "metrics.csv").unlink()
    _add(post, GRID[1], TrialState.COMPLETE, half)
    _whole_run(runs / "stray", 1.0)  # looks finished; no complete trial records it
    _add(post, GRID[0], TrialState.RUNNING)
    found = chaos.check_sweep(tmp_path, storage_url, SPEC)
    assert not found.ok
    assert found.lost == [f"{POST} lr={GRID[0]}"]
    assert found.duplicated == [f"{PRE} lr={GRID[1]} complete 2 times"]
    assert len(found.unexplained) == 1 and len(found.unfinished) == 1
    bad = dict(line.split(": ", 1) for line in found.bad_run_dirs)
    assert set(bad) == {"d", "stray"}
    assert "no metrics.csv" in bad["d"] and "no complete trial" in bad["stray"]


def test_a_summary_that_disagrees_with_the_trial_is_found(tmp_path, storage_url):
    pre, post = _studies(storage_url)
    runs = tmp_path / "runs"
    for study, cell in ((pre, "pre"), (post, "post")):
        for i, lr in enumerate(GRID):
            _add(study, lr, TrialState.COMPLETE, _whole_run(runs / f"{cell}{i}", 1.0))
    (runs / "post1" / "summary.json").write_text(
        json.dumps({"status": "completed", "metrics": {"val/loss": 2.5}})
    )
    found = chaos.check_sweep(tmp_path, storage_url, SPEC)
    assert found.bad_run_dirs == ["post1: summary.json's val/loss = 2.5, the trial recorded 1.0"]


def test_the_schedule_is_replayed_by_its_seed_and_fits_each_storage():
    import random

    one = chaos.schedule(random.Random(7), "journal", 3)
    assert one == chaos.schedule(random.Random(7), "journal", 3)
    assert sorted(set(one)) == sorted(k for k in chaos.KINDS if k != "pg-restart")
    assert all(one.count(k) == 3 for k in set(one))
    pg = chaos.schedule(random.Random(7), "postgres", 3)
    assert "torn-journal" not in pg and pg.count("pg-restart") == 3

"""Growing a sweep: additive spec changes extend it and keep every finished trial;
any other change shows the difference and refuses (one line, exit 2)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import optuna
import pytest

from bench.cli import main
from bench.config import ConfigError
from bench.sweeps.grow import is_additive, spec_changes
from bench.sweeps.layout import prepare_sweep
from bench.sweeps.spec import parse_spec
from bench.sweeps.worker import run_worker
from tests.sweep_helpers import tiny_spec, write_spec

# One cell, 2 tuning points then seeds; 4 steps a run.
BASE = tiny_spec(
    name="grow",
    compare={"model.norm_placement": ["pre"]},
    tune={
        "params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
        "trials": 2,
        "points": 2,
    },
)
BASE["base"]["train"].update(max_steps=4, val_every=2)
BASE["budget"] = {"wall_clock": 300, "trials": 20}


def changed(**changes) -> dict:
    """BASE with dotted keys replaced: ``changed(**{"budget.wall_clock": 60})``."""
    spec = copy.deepcopy(BASE)
    for key, value in changes.items():
        node = spec
        *parents, last = key.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return spec


def judge(**changes) -> list:
    return spec_changes(parse_spec(BASE), parse_spec(changed(**changes)))


# ----------------------------------------------------------------------------- each kind


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"seeds": 3}, "seeds"),
        ({"tune/trials": 4}, "tune.trials"),
        ({"budget/wall_clock": 600}, "budget.wall_clock"),
        ({"budget/trials": 50}, "budget.trials"),
        ({"compare/model.norm_placement": ["pre", "post"]}, "compare.model.norm_placement"),
        ({"description": "more seeds"}, "description"),
    ],
)
def test_additive_changes(changes, key):
    found = judge(**changes)
    assert [c.key for c in found] == [key]
    assert is_additive(found), found[0].line()


@pytest.mark.parametrize(
    ("changes", "key", "why"),
    [
        ({"seeds": 0}, "seeds", "fewer seeds"),
        ({"budget/wall_clock": 60}, "budget.wall_clock", "smaller budget"),
        ({"tune/trials": 1, "tune/points": 1}, "tune.trials", "fewer tuning trials"),
        ({"compare/model.norm_placement": ["post"]}, "compare.model.norm_placement", "removed"),
        (
            {"compare/model.pos_encoding": ["rope"]},
            "compare.model.pos_encoding",
            "new or removed axis",
        ),
        ({"base/train/max_steps": 8}, "base.train.max_steps", "train something else"),
        ({"budget/max_steps": 8}, "budget.max_steps", "another number of steps"),
        ({"seed": 7}, "seed", "another question"),
        ({"objective": {"metric": "val/acc", "direction": "maximize"}}, "objective.metric", ""),
        ({"tune/params/train.lr/high": 0.1}, "tune.params.train.lr.high", ""),
        ({"name": "other"}, "name", ""),
    ],
)
def test_changes_that_are_not_additive(changes, key, why):
    found = judge(**changes)
    assert key in [c.key for c in found]
    assert not is_additive(found)
    assert why in next(c for c in found if c.key == key).why


def test_more_trials_that_move_the_deterministic_points_are_not_additive():
    spec = changed(**{"tune/trials": 3})
    spec["tune"].pop("points")  # points default to min(trials, 5): 2 -> 3 grid points
    base = copy.deepcopy(BASE)
    base["tune"].pop("points")
    found = spec_changes(parse_spec(base), parse_spec(spec))
    assert not is_additive(found) and "tuning points" in found[0].why


# ----------------------------------------------------------------------------- real sweeps


def _run(tmp_path: Path, spec: dict, extend: bool = False) -> Path:
    path = write_spec(tmp_path / "grow.yaml", spec)
    prepare_sweep(path, out=tmp_path / "sweep", check_data=False, extend=extend)
    assert run_worker(str(tmp_path / "sweep"), worker_id="w", threads=1, check_data=False) == 0
    return tmp_path / "sweep"


def _trials(sweep: Path, study: str) -> list:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(sweep / "journal.log"))
    )
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _finished(sweep: Path, study: str) -> dict[int, tuple]:
    return {t.number: (t.state.name, t.values, t.datetime_complete) for t in _trials(sweep, study)}


def test_more_seeds_extend_the_sweep_and_keep_every_finished_trial(tmp_path, capsys):
    sweep = _run(tmp_path, BASE)
    tune_before = _finished(sweep, "grow/tune/norm_placement=pre")
    seeds_before = _finished(sweep, "grow/seeds")
    assert len(seeds_before) == 1
    _run(tmp_path, changed(seeds=2), extend=True)
    assert _finished(sweep, "grow/tune/norm_placement=pre") == tune_before  # nothing re-run
    seeds_after = _finished(sweep, "grow/seeds")
    assert {k: v for k, v in seeds_after.items() if k in seeds_before} == seeds_before
    assert sorted(t.user_attrs["seed"] for t in _trials(sweep, "grow/seeds")) == [1, 2]
    assert "seeds: 1 -> 2  (additive" in capsys.readouterr().out
    meta = json.loads((sweep / "sweep.json").read_text())
    assert meta["seeds"] == 2 and "seeds: 1 -> 2" in meta["extended"][0]["changes"][0]


def test_new_axis_values_add_cells_and_more_trials_extend_the_old_cells(tmp_path):
    sweep = _run(tmp_path, BASE)
    pre_before = _finished(sweep, "grow/tune/norm_placement=pre")
    grown = changed(**{"compare/model.norm_placement": ["pre", "post"], "tune/trials": 3})
    _run(tmp_path, grown, extend=True)
    pre_after = _trials(sweep, "grow/tune/norm_placement=pre")
    assert {
        t.number: (t.state.name, t.values, t.datetime_complete) for t in pre_after if t.number < 2
    } == pre_before
    assert len(pre_after) == 3  # one more (TPE) trial in the old cell
    post = _trials(sweep, "grow/tune/norm_placement=post")
    assert [t.params for t in post[:2]] == [t.params for t in pre_after[:2]]  # same points
    seeds = _trials(sweep, "grow/seeds")
    from bench.sweeps.layout import open_sweep_dir
    from bench.sweeps.progress.standing import sweep_status
    from bench.sweeps.study import is_current_seed_run, seed_sources

    opened = open_sweep_dir(sweep)
    sources = seed_sources(opened.open_storage(), opened.spec)
    current = [t for t in seeds if is_current_seed_run(t, sources)]
    assert sorted(t.user_attrs["cell"] for t in current) == [
        "norm_placement=post",
        "norm_placement=pre",
    ]
    assert all(t.state.name == "COMPLETE" for t in current)
    rows = {(r.phase, r.cell): r for r in sweep_status(opened.open_storage(), opened.spec)}
    assert rows[("seed", "norm_placement=pre")].tally.done == 1  # a superseded run is not counted


def test_an_additive_change_without_extend_shows_the_diff_and_asks_for_extend(tmp_path, capsys):
    sweep = _run(tmp_path, BASE)
    spec = write_spec(tmp_path / "more.yaml", changed(seeds=3))
    before = (sweep / "spec.yaml").read_text()
    capsys.readouterr()  # the runs' own progress
    assert main(["sweep", str(spec), "--out", str(sweep)]) == 2
    out, err = capsys.readouterr()
    assert "seeds: 1 -> 3  (additive: 2 more seed run(s)" in out
    assert err.strip().splitlines() == [
        f"bench sweep: error: out={sweep}: the spec adds to sweep 'grow'; rerun with --extend to "
        "grow it (every finished trial is kept), or give a new --out for a separate sweep"
    ]
    assert (sweep / "spec.yaml").read_text() == before


def test_a_change_that_is_not_additive_shows_the_diff_and_points_to_a_new_out(tmp_path, capsys):
    sweep = _run(tmp_path, BASE)
    spec = write_spec(tmp_path / "longer.yaml", changed(**{"base/train/max_steps": 8, "seeds": 2}))
    capsys.readouterr()
    with pytest.raises(ConfigError, match=r"base\.train\.max_steps is not an additive change"):
        prepare_sweep(spec, out=sweep, check_data=False, extend=True)
    out = capsys.readouterr().out
    assert "base.train.max_steps: 4 -> 8  (not additive" in out
    assert "seeds: 1 -> 2  (additive" in out


def test_a_new_best_from_more_trials_gets_new_seed_runs_and_the_old_ones_are_superseded(tmp_path):
    """Storage-level: a better tuning trial changes the seed job's source; the seed run of the
    old best leaves the status table and the report, and a new job is enqueued."""
    from bench.report.collect import load_sweep
    from bench.sweeps.progress.standing import sweep_status
    from bench.sweeps.study import enqueue_missing_seed_jobs, seed_jobs

    sweep = prepare_sweep(
        write_spec(tmp_path / "g.yaml", BASE), out=tmp_path / "s", check_data=False
    )
    storage = sweep.open_storage()
    tune = optuna.load_study(study_name="grow/tune/norm_placement=pre", storage=storage)
    for value in (2.0, 1.0):  # the two enqueued tuning points
        tune.tell(tune.ask(), value)
    seeds = optuna.load_study(study_name="grow/seeds", storage=storage)
    assert enqueue_missing_seed_jobs(seeds, seed_jobs(storage, sweep.spec)) == 1
    old = seeds.ask()
    seeds.tell(old, 1.1)
    assert enqueue_missing_seed_jobs(seeds, seed_jobs(storage, sweep.spec)) == 0  # done already

    better = tune.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    tune.tell(better, 0.5)  # a third trial (the sweep grew) beats both points
    (job,) = seed_jobs(storage, sweep.spec)
    assert job.source == f"grow/tune/norm_placement=pre#{better.number}"
    assert enqueue_missing_seed_jobs(seeds, [job]) == 1  # same cell and seed, new source
    (row,) = [r for r in sweep_status(storage, sweep.spec) if r.phase == "seed"]
    assert (row.tally.done, row.tally["waiting"]) == (0, 1)  # the old run no longer counts
    rows = load_sweep(tmp_path / "s").runs(phase="seed")
    assert [r["trial"] for r in rows] == [1]  # the report keeps only the new best's job

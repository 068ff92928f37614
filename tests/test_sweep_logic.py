"""Sweep bookkeeping without training: devices per worker, slots and budgets, seed jobs,
against real Optuna journal storages."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import tiny_spec, write_spec

from bench.config import ConfigError
from bench.sweeps.launcher import assign_devices, parse_devices
from bench.sweeps.layout import prepare_sweep
from bench.sweeps.objective import fail_trial
from bench.sweeps.progress.standing import sweep_status
from bench.sweeps.progress.status import status_table
from bench.sweeps.study import (
    enqueue_missing_seed_jobs,
    is_duplicate,
    seed_jobs,
    seed_values,
    tally,
)

# ----------------------------------------------------------------------------- devices


def test_one_worker_per_gpu_by_default():
    slots = assign_devices(None, ["0", "1", "2", "3"], per_trial=1, cpu_count=8)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0", "1", "2", "3"]
    assert all(s.threads == 2 for s in slots)


def test_ddp_trials_get_groups_of_devices():
    slots = assign_devices(None, ["0", "1", "2", "3"], per_trial=2, cpu_count=8)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["0,1", "2,3"]


def test_fewer_workers_than_gpu_groups_use_the_first_groups():
    slots = assign_devices(1, ["4", "5"], per_trial=1, cpu_count=2)
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in slots] == ["4"]


def test_more_workers_than_gpu_groups_is_an_error():
    with pytest.raises(ConfigError, match=r"--workers=3: needs 6 GPUs"):
        assign_devices(3, ["0", "1", "2", "3"], per_trial=2)


def test_gpus_that_do_not_split_into_ddp_groups_are_an_error():
    with pytest.raises(ConfigError, match=r"groups of train\.devices=2"):
        assign_devices(None, ["0", "1", "2"], per_trial=2)


def test_cpu_workers_divide_the_cores_and_hide_gpus():
    slots = assign_devices(2, [], per_trial=1, cpu_count=8)
    assert [s.threads for s in slots] == [4, 4]
    assert all(
        s.env["CUDA_VISIBLE_DEVICES"] == "" and s.env["OMP_NUM_THREADS"] == "4" for s in slots
    )
    assert [s.threads for s in assign_devices(2, [], per_trial=2, cpu_count=8)] == [2, 2]
    assert [s.threads for s in assign_devices(2, [], per_trial=1, cpu_count=2)] == [1, 1]


def test_more_cpu_workers_than_cpu_slots_is_refused():
    with pytest.raises(
        ConfigError, match=r"--workers=4: needs 4 CPU slots .* may use 2; allowed: 1..2"
    ):
        assign_devices(4, [], per_trial=1, cpu_count=2)
    with pytest.raises(
        ConfigError, match=r"--workers=2: needs 4 CPU slots \(train.devices=2 each\)"
    ):
        assign_devices(2, [], per_trial=2, cpu_count=2)


def test_device_lists_are_parsed():
    assert parse_devices("0, 1") == ["0", "1"]
    assert parse_devices("cpu") == []
    assert parse_devices(None) is None
    with pytest.raises(ConfigError, match="twice"):
        parse_devices("0,0")


# ----------------------------------------------------------------------------- slots


@pytest.fixture
def sweep(tmp_path):
    # TPE: studies start empty (the auto sampler would enqueue its grid points first).
    spec = tiny_spec()
    spec["tune"] = {**spec["tune"], "sampler": "tpe"}
    return prepare_sweep(write_spec(tmp_path / "s.yaml", spec), out=tmp_path / "sweep")


def _study(sweep, cell="norm_placement=pre"):
    return optuna.load_study(study_name=f"tiny/tune/{cell}", storage=sweep.open_storage())


def test_a_retried_trial_shares_its_slot_and_is_not_counted_twice(sweep):
    study = _study(sweep)
    t = study.ask()
    study.tell(t, 1.0)
    crashed = study.ask()
    assert fail_trial(study, crashed._trial_id, "failed", "worker died", retry=2)
    counts = tally(study.get_trials())
    assert counts.used == 2 and counts["waiting"] == 1 and counts["failed"] == 0
    retry = study.ask()  # pops the waiting retry
    assert retry.number == 2
    study.tell(retry, 0.5)
    counts = tally(study.get_trials())
    assert counts.used == 2 and counts["complete"] == 2 and counts.done == 2


def test_retries_stop_after_max_retries_and_the_failure_counts(sweep):
    study = _study(sweep)
    t = study.ask()
    assert fail_trial(study, t._trial_id, "failed", "died", retry=1)
    assert fail_trial(study, study.ask()._trial_id, "failed", "died again", retry=1)
    counts = tally(study.get_trials())
    assert counts["waiting"] == 0 and counts["failed"] == 1 and counts.used == 1


def test_surplus_trials_hold_no_slot(sweep):
    study = _study(sweep)
    t = study.ask()
    fail_trial(study, t._trial_id, "surplus", "budget taken", retry=False)
    assert tally(study.get_trials()).used == 0


def test_a_finished_trial_cannot_be_failed_again(sweep):
    study = _study(sweep)
    t = study.ask()
    study.tell(t, 1.0)
    assert not fail_trial(study, t._trial_id, "failed", "late", retry=2)
    assert study.trials[0].state == TrialState.COMPLETE


def test_seed_jobs_take_each_cells_best_trial_with_fresh_seeds(sweep):
    storage = sweep.open_storage()
    for cell, values in {
        "norm_placement=pre": [0.9, 0.4],
        "norm_placement=post": [0.7, 0.8],
    }.items():
        study = optuna.load_study(study_name=f"tiny/tune/{cell}", storage=storage)
        for v in values:
            t = study.ask()
            t.suggest_float("train.lr", 1e-3, 1e-2, log=True)
            study.tell(t, v)
    jobs = seed_jobs(storage, sweep.spec)
    assert seed_values(sweep.spec) == [1]  # base train.seed 0 is the tuning seed
    assert [(j.cell, j.seed, j.source) for j in jobs] == [
        ("norm_placement=pre", 1, "tiny/tune/norm_placement=pre#1"),
        ("norm_placement=post", 1, "tiny/tune/norm_placement=post#0"),
    ]
    assert jobs[0].overrides["model.norm_placement"] == "pre" and "train.lr" in jobs[0].overrides


def test_a_seed_job_enqueued_twice_runs_once(sweep):
    storage = sweep.open_storage()
    for cell in ("norm_placement=pre", "norm_placement=post"):
        study = optuna.load_study(study_name=f"tiny/tune/{cell}", storage=storage)
        study.tell(study.ask(), 1.0)
    seeds = optuna.load_study(study_name="tiny/seeds", storage=storage)
    jobs = seed_jobs(storage, sweep.spec)
    assert enqueue_missing_seed_jobs(seeds, jobs) == 2
    assert enqueue_missing_seed_jobs(seeds, jobs) == 0  # idempotent
    seeds.enqueue_trial(
        {}, user_attrs={"job": jobs[0].key, "cell": jobs[0].cell, "source": jobs[0].source}
    )  # a racing worker
    first, second, dup = (seeds.ask() for _ in range(3))
    trials = seeds.get_trials()
    assert not is_duplicate(trials, trials[first.number])
    assert not is_duplicate(trials, trials[second.number])
    assert is_duplicate(trials, trials[dup.number])


def test_status_table_shows_a_row_per_cell_with_counts(sweep):
    study = _study(sweep)
    study.tell(study.ask(), 0.25)
    t = study.ask()
    t.set_user_attr("status", "diverged")
    study.tell(t, state=TrialState.PRUNED)
    rows = sweep_status(sweep.open_storage(), sweep.spec)
    pre = next(r for r in rows if r.cell == "norm_placement=pre")
    assert (pre.tally["complete"], pre.tally["diverged"], pre.tally["pruned"], pre.best) == (
        1,
        1,
        0,
        0.25,
    )
    assert status_table(rows).row_count == 2

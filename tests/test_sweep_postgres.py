"""A sweep shared through PostgreSQL (the across-machines path), against the real server.

Each test gets a fresh database, dropped afterwards. In CI (CI=true) these tests
must run; elsewhere they skip when the server is unreachable.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess

import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import (
    env_for_tests,
    fresh_database,
    postgres_reachable,
    tiny_spec,
    wait_for,
    worker_cmd,
    write_spec,
)

from bench.config import ConfigError
from bench.sweeps.layout import prepare_sweep
from bench.sweeps.storage import open_storage
from bench.sweeps.study import tally
from bench.sweeps.worker import run_worker

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        os.environ.get("CI", "").lower() != "true" and not postgres_reachable(),
        reason="PostgreSQL on 127.0.0.1:5432 unreachable (these tests run in CI)",
    ),
]


@pytest.fixture
def pg_url():
    with fresh_database() as url:
        yield url


def _trials(url: str, name: str):
    return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()


@pytest.mark.slow
def test_workers_with_separate_directories_share_one_sweep_through_postgres(tmp_path, pg_url):
    spec = write_spec(tmp_path / "s.yaml", tiny_spec(seeds=1))
    procs = [
        subprocess.Popen(
            worker_cmd(spec, tmp_path / f"node{i}", str(i), storage=pg_url),
            env=env_for_tests(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        errs = [p.communicate(timeout=300)[1] for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for e in errs]
    storage = open_storage(pg_url)
    assert sorted(optuna.get_all_study_names(storage)) == [
        "tiny/seeds",
        "tiny/tune/norm_placement=post",
        "tiny/tune/norm_placement=pre",
    ]
    for cell in ("pre", "post"):
        t = tally(_trials(pg_url, f"tiny/tune/norm_placement={cell}"))
        assert t.used == 2 and t["complete"] == 2
    seeds = _trials(pg_url, "tiny/seeds")
    jobs = [t.user_attrs["job"] for t in seeds if t.state == TrialState.COMPLETE]
    assert sorted(jobs) == ["norm_placement=post|seed=1", "norm_placement=pre|seed=1"]
    run_dirs = {
        t.user_attrs["run_dir"]
        for name in optuna.get_all_study_names(storage)
        for t in _trials(pg_url, name)
        if t.state == TrialState.COMPLETE
    }
    assert all(os.path.isfile(os.path.join(d, "summary.json")) for d in run_dirs)


# not slow: CI's end-to-end PostgreSQL test (real workers, a SIGKILL, heartbeats, a retry)
def test_a_vanished_worker_is_detected_by_heartbeat_and_its_trial_retried(tmp_path, pg_url):
    spec = tiny_spec(
        compare={"model.norm_placement": ["pre"]},
        seeds=0,
        retry={"heartbeat_interval": 1, "grace_period": 3, "max_retries": 2},
    )
    spec["base"]["train"]["max_steps"] = 60
    spec_path = write_spec(tmp_path / "s.yaml", spec)
    a = subprocess.Popen(
        worker_cmd(spec_path, tmp_path / "a", "a", storage=pg_url),
        env=env_for_tests(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state = wait_for(lambda: _state(tmp_path / "a" / "workers" / "a.json"), timeout=180)
        os.kill(state["pid"], signal.SIGKILL)
        a.wait(timeout=30)
    finally:
        a.kill()
    name = "tiny/tune/norm_placement=pre"
    assert _trials(pg_url, name)[state["number"]].state == TrialState.RUNNING  # nobody noticed yet
    # worker b joins in this process: what is tested is that it notices a's missing heartbeat
    b = run_worker(
        str(spec_path), storage=pg_url, out=str(tmp_path / "b"), worker_id="b", threads=1
    )
    assert b == 0
    trials = _trials(pg_url, name)
    assert trials[state["number"]].state == TrialState.FAIL
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == state["number"])
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["worker"].endswith(":b")
    t = tally(trials)
    assert t.used == 2 and t["complete"] == 2 and t.active == 0


def _state(path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def test_a_missing_database_is_a_one_line_error_and_creates_nothing(tmp_path, pg_url):
    spec = write_spec(tmp_path / "s.yaml", tiny_spec())
    missing = pg_url.rsplit("/", 1)[0] + "/bench_test_does_not_exist"
    with pytest.raises(ConfigError, match=r"storage=.*bench_test_does_not_exist: cannot connect"):
        prepare_sweep(spec, storage=missing, out=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_preparing_a_sweep_creates_its_studies_in_postgres(tmp_path, pg_url):
    sweep = prepare_sweep(
        write_spec(tmp_path / "s.yaml", tiny_spec()), storage=pg_url, out=tmp_path / "o"
    )
    names = optuna.get_all_study_names(open_storage(pg_url))
    assert sorted(names) == [
        "tiny/seeds",
        "tiny/tune/norm_placement=post",
        "tiny/tune/norm_placement=pre",
    ]
    meta = json.loads((sweep.dir / "sweep.json").read_text())
    assert meta["storage"].startswith("postgresql")


def test_a_trial_left_running_without_any_heartbeat_is_found_once_old_enough(pg_url):
    """What a worker that lost the database inside ``ask`` leaves: RUNNING, no heartbeat."""
    import time

    from bench.sweeps.recovery.heartbeat import heartbeats, unbeating_trial_ids

    storage = open_storage(pg_url)
    study = optuna.create_study(study_name="s", storage=storage)
    orphan = study.ask()  # no heartbeat recorded: its worker died right here
    owned = study.ask()
    beating = heartbeats(storage)
    assert beating is not None
    beating.record_heartbeat(owned._trial_id)
    assert unbeating_trial_ids(storage, study._study_id, older_than=3600) == []
    time.sleep(1.1)
    assert unbeating_trial_ids(storage, study._study_id, older_than=1) == [orphan._trial_id]
    study.tell(orphan, 1.0)
    assert unbeating_trial_ids(storage, study._study_id, older_than=1) == []


@pytest.mark.parametrize("where", ["journal", "postgresql"])
def test_a_retry_lost_between_fail_and_enqueue_is_enqueued_by_the_next_worker(
    where, tmp_path, pg_url
):
    """A crash between a trial's FAIL and its retry's enqueue must not lose the trial."""
    from bench.sweeps.recovery.retry import RETRY_PENDING, fail_trial, requeue_lost_retries

    url = pg_url if where == "postgresql" else str(tmp_path / "journal.log")
    study = optuna.create_study(study_name="s", storage=open_storage(url))
    study.enqueue_trial({"x": 1.0})
    trial = study.ask()
    # what fail_trial writes before a process killed mid-way could enqueue the retry
    study._storage.set_trial_system_attr(trial._trial_id, RETRY_PENDING, True)
    study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    assert requeue_lost_retries(study, max_retry=3, after=3600) == []  # may still be enqueuing
    assert requeue_lost_retries(study, max_retry=3, after=0) == [trial.number]
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.system_attrs["failed_trial"] for t in waiting] == [trial.number]
    assert requeue_lost_retries(study, max_retry=3, after=0) == []  # once only
    # a trial failed the whole way (retry enqueued) is left alone
    other = study.ask()
    assert fail_trial(study, other._trial_id, "failed", "worker died", retry=3)
    assert requeue_lost_retries(study, max_retry=3, after=0) == []

"""A sweep survives crashes: killed launchers, torn journals, dead heartbeats, full disks.

Real processes and signals, real journal files, the real PostgreSQL server and a
real (tiny) tmpfs. A command whose process is not what is tested runs in this one
(``tests/in_process.py``).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import (
    env_for_tests,
    fresh_database,
    require_postgres,
    tiny_spec,
    wait_for,
    worker_cmd,
    write_spec,
)
from test_security import RUN_ARGS, assert_one_line_error, bench, unfinished_copy

from bench.sweeps.storage import open_storage
from tests.in_process import bench_in_process


def _sweep_cmd(spec: Path, out: Path, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "bench", "sweep", str(spec), "--out", str(out),
            "--workers", str(workers)]  # fmt: skip


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _running_state(sweep: Path) -> list[dict]:
    states = []
    for p in (sweep / "workers").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            states.append(json.loads(p.read_text()))
    return states


def _completed_once(journal: Path, spec: dict) -> None:
    """Every planned trial of every study COMPLETE exactly once (counted through Optuna)."""
    storage = open_storage(str(journal))
    names = optuna.get_all_study_names(storage)
    for name in names:
        trials = optuna.load_study(study_name=name, storage=storage).get_trials()
        assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        if name.endswith("/seeds"):
            jobs = Counter(t.user_attrs["job"] for t in complete)
            assert jobs and set(jobs.values()) == {1}, jobs
        else:
            assert len(complete) == spec["tune"]["trials"], (name, len(complete))


@pytest.mark.slow
def test_a_rerun_recovers_trials_orphaned_when_launcher_and_workers_die_together(tmp_path):
    spec_dict = tiny_spec(budget={"wall_clock": 150})
    spec_dict["base"]["train"]["max_steps"] = 150  # long enough to be killed mid-trial
    spec = write_spec(tmp_path / "s.yaml", spec_dict)
    out = tmp_path / "sweep"
    launcher = subprocess.Popen(
        _sweep_cmd(spec, out), env=env_for_tests(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(_running_state(out)) == 2, timeout=180, every=0.1)
        workers = _children(launcher.pid)
        orphans = {(s["study"], s["number"]) for s in _running_state(out)}
        # the OOM killer / a power cut: everything at once, nobody cleans up
        for pid in [launcher.pid, *workers]:
            os.kill(pid, signal.SIGKILL)
        launcher.wait(timeout=30)
    finally:
        launcher.kill()
    assert orphans and len(workers) == 2
    started = time.time()
    r = subprocess.run(_sweep_cmd(spec, out), env=env_for_tests(), capture_output=True,
                       text=True, timeout=400)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert time.time() - started < 140, "the rerun waited for the orphans until wall_clock"
    storage = open_storage(str(out / "journal.log"))
    for study, number in orphans:
        t = optuna.load_study(study_name=study, storage=storage).get_trials()[number]
        assert t.state == TrialState.FAIL
        assert (
            t.user_attrs["status"] == "failed"
            and "died with its launcher" in t.user_attrs["reason"]
        )
    _completed_once(out / "journal.log", spec_dict)


@pytest.mark.slow
def test_a_journal_torn_mid_record_is_repaired_with_a_backup_and_never_appended_to(tmp_path):
    spec_dict = tiny_spec(compare={"model.norm_placement": ["pre"]}, seeds=0)
    spec_dict["tune"]["trials"] = 1
    spec = write_spec(tmp_path / "s.yaml", spec_dict)
    out = tmp_path / "sweep"
    first = subprocess.run(_sweep_cmd(spec, out, 1), env=env_for_tests(), capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    journal = out / "journal.log"
    whole = journal.read_bytes()
    last = whole.splitlines(keepends=True)[-1]
    torn = last[: len(last) // 2]  # a crash in the middle of writing one more record
    journal.write_bytes(whole + torn)

    again = subprocess.run(_sweep_cmd(spec, out, 1), env=env_for_tests(), capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    notes = [ln for ln in again.stderr.splitlines() if "torn" in ln]
    assert len(notes) == 1 and f"{len(torn)} bytes" in notes[0], again.stderr[-3000:]
    assert journal.read_bytes().startswith(whole)  # nothing appended onto the cut record
    backups = list(out.glob("journal.log.torn-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == whole + torn
    status = bench("status", str(out))
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr[-3000:]
    _completed_once(journal, spec_dict)


@pytest.mark.slow  # a kill -9 scenario that waits out a heartbeat grace period
@pytest.mark.postgres
def test_a_trial_failed_by_heartbeat_says_failed_and_why(tmp_path):
    require_postgres()
    spec_dict = tiny_spec(
        compare={"model.norm_placement": ["pre"]},
        seeds=0,
        retry={"heartbeat_interval": 1, "grace_period": 3, "max_retries": 2},
    )
    spec_dict["base"]["train"]["max_steps"] = 150
    spec = write_spec(tmp_path / "s.yaml", spec_dict)
    with fresh_database() as url:
        a = subprocess.Popen(worker_cmd(spec, tmp_path / "a", "a", storage=url),
                             env=env_for_tests(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            state = wait_for(lambda: (_running_state(tmp_path / "a") or [None])[0], timeout=180)
            os.kill(state["pid"], signal.SIGKILL)
            a.wait(timeout=30)
        finally:
            a.kill()
        b = subprocess.run(worker_cmd(spec, tmp_path / "b", "b", storage=url),
                           env=env_for_tests(), capture_output=True, text=True,
                           timeout=300)  # fmt: skip
        assert b.returncode == 0, b.stderr[-3000:]
        study = optuna.load_study(study_name=state["study"], storage=open_storage(url))
        dead = study.get_trials()[state["number"]]
        assert dead.state == TrialState.FAIL
        assert dead.user_attrs["status"] == "failed"
        assert "no heartbeat" in dead.user_attrs["reason"]


def test_a_truncated_checkpoint_is_one_line_on_resume_and_landscape(trained_run, tmp_path):
    run = unfinished_copy(trained_run, tmp_path / "run")  # as a crash leaves it
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    for args in (["train", "--resume", str(run)], ["landscape", str(run)]):
        line = assert_one_line_error(bench_in_process(*args))
        assert str(ckpt) in line and "truncated" in line
        assert not (run / "summary.json").exists()


def _mount_tmpfs(path: Path, *opts: str) -> None:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(["size=1m", *opts]), "tmpfs", str(path)],
                   check=True)  # fmt: skip


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@needs_root
def test_a_read_only_output_directory_is_one_line_and_exit_2(tmp_path):
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro")
    try:
        line = assert_one_line_error(
            bench_in_process("train", *RUN_ARGS, f"tracking.out_dir={ro / 'runs'}")
        )
        assert str(ro / "runs") in line and "not writable" in line
        spec = write_spec(tmp_path / "s.yaml", tiny_spec())
        line = assert_one_line_error(
            bench_in_process("sweep", str(spec), "--out", str(ro / "sweep"))
        )
        assert str(ro / "sweep") in line and "not writable" in line
    finally:
        subprocess.run(["umount", str(ro)], check=True)


@needs_root
def test_a_full_disk_is_one_line_exit_1_and_the_run_says_failed(tmp_path):
    full = tmp_path / "full"
    _mount_tmpfs(full)
    try:
        # leave room for the run's small files, not for its checkpoint
        free = os.statvfs(full).f_bavail * os.statvfs(full).f_frsize
        (full / "filler").write_bytes(b"\0" * (free - 48 * 1024))
        run = full / "run"
        r = bench_in_process("train", *RUN_ARGS, "model.d_model=32", f"tracking.run_dir={run}")
        line = assert_one_line_error(r, code=1)
        assert "no space left" in line and str(full) in line
        assert not (run / "summary.json").exists()
        assert json.loads((run / "status.json").read_text())["status"] == "failed"
    finally:
        subprocess.run(
            ["umount", "--lazy", str(full)], check=True
        )  # W&B's service may outlive bench


@needs_root
@pytest.mark.parametrize(
    "room_kb",
    [
        24,  # the disk fills while wandb.init writes its files
        48,  # it fills at the first checkpoint, after W&B's offline run has started
    ],
)
def test_a_full_disk_with_wandb_offline_is_still_one_line(tmp_path, room_kb):
    """W&B's writer threads keep logging to a full disk up to exit; none of it reaches stderr."""
    full = tmp_path / "full"
    _mount_tmpfs(full)
    try:
        free = os.statvfs(full).f_bavail * os.statvfs(full).f_frsize
        (full / "filler").write_bytes(b"\0" * (free - room_kb * 1024))
        run = full / "run"
        args = [a for a in RUN_ARGS if not a.startswith("tracking.mode=")]
        r = bench("train", *args, "model.d_model=32", "tracking.mode=offline",
                  f"tracking.run_dir={run}")  # fmt: skip
        assert r.returncode == 1, r.stderr[-3000:]
        assert "Traceback" not in r.stderr and "Logging error" not in r.stderr, r.stderr[-3000:]
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert 1 <= len(lines) <= 3, r.stderr[-3000:]
        assert "no space left on the device" in lines[-1] and str(full) in lines[-1]
        assert not (run / "summary.json").exists()
    finally:
        subprocess.run(
            ["umount", "--lazy", str(full)], check=True
        )  # W&B's service may outlive bench


@needs_root
def test_a_checkpoint_save_on_a_full_disk_leaves_the_previous_checkpoint_whole(tmp_path):
    import torch

    from bench.training.checkpoint import load_checkpoint
    from bench.training.checkpoint_io import AtomicCheckpointIO

    full = tmp_path / "full"
    _mount_tmpfs(full)
    try:
        path = full / "run" / "checkpoints" / "last.ckpt"
        old = {"state_dict": {"w": torch.arange(1000.0)}, "global_step": 10}
        AtomicCheckpointIO().save_checkpoint(old, path)
        free = os.statvfs(full).f_bavail * os.statvfs(full).f_frsize
        (full / "filler").write_bytes(b"\0" * (free - 16 * 1024))  # less than a checkpoint
        new = {"state_dict": {"w": torch.zeros(8000)}, "global_step": 20}
        with pytest.raises(OSError) as e:
            AtomicCheckpointIO().save_checkpoint(new, path)
        assert e.value.errno == errno.ENOSPC and e.value.filename == str(path)
        kept = load_checkpoint(path)
        assert kept["global_step"] == 10 and torch.equal(
            kept["state_dict"]["w"], old["state_dict"]["w"]
        )
        assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]  # no temporary left
    finally:
        subprocess.run(
            ["umount", "--lazy", str(full)], check=True
        )  # W&B's service may outlive bench


# ----------------------------------------------------------------------------- many workers


@pytest.mark.slow
def test_a_grid_swept_by_two_workers_runs_each_point_exactly_once(tmp_path):
    grid = [0.001, 0.003, 0.01]
    spec_dict = tiny_spec(
        compare={"model.norm_placement": ["pre"]},
        tune={"params": {"train.lr": {"choices": grid}}, "trials": 3, "sampler": "grid"},
        seeds=0,
        seed=7,
    )
    spec_dict["base"]["train"]["max_steps"] = 150  # long enough that both workers get a point
    spec = write_spec(tmp_path / "s.yaml", spec_dict)
    out = tmp_path / "sweep"
    r = subprocess.run(_sweep_cmd(spec, out, 2), env=env_for_tests(), capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    study = optuna.load_study(
        study_name="tiny/tune/norm_placement=pre", storage=open_storage(str(out / "journal.log"))
    )
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    workers = {t.user_attrs["worker"] for t in complete}
    assert len(workers) == 2, "both workers should have run grid points"
    assert sorted(t.params["train.lr"] for t in complete) == grid

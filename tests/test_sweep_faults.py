"""A sweep trial meets a full disk or an unreadable checkpoint: it is retried, not lost.

In-process, through the worker's own claim and execute, on a real journal storage
and (for the full disk) a real tmpfs holding the run directories.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import one_cell_spec, write_spec

from bench.sweeps.layout import prepare_sweep
from bench.sweeps.objective import DISK_FULL, TrialJob, execute
from bench.sweeps.worker import Worker

STUDY = "tiny/tune/norm_placement=pre"


def _worker(tmp_path: Path) -> Worker:
    spec = write_spec(tmp_path / "s.yaml", one_cell_spec(1))
    return Worker(prepare_sweep(str(spec), out=str(tmp_path / "sweep")), "w")


def _run_next(worker: Worker) -> str:
    job = worker.claim()
    assert isinstance(job, TrialJob), job
    scratch = worker.sweep.worker_file("w").with_suffix(".trial.yaml")
    return execute(worker.sweep, job, worker.label, scratch, threads=1)


def _trials(worker: Worker) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=STUDY, storage=worker.storage).get_trials()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_trial_that_fails_on_a_full_disk_is_retried_and_completes_once_there_is_room(
    tmp_path,
):
    worker = _worker(tmp_path)
    runs = worker.sweep.dir / "runs"
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(runs)], check=True)
    try:
        with open(runs / ".filler", "wb", buffering=0) as f, pytest.raises(OSError):
            while True:
                f.write(b"\0" * 65536)
        assert _run_next(worker) == DISK_FULL
        failed, retry = _trials(worker)
        assert failed.state == TrialState.FAIL and "No space left" in failed.user_attrs["reason"]
        assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
        (runs / ".filler").unlink()
        assert _run_next(worker) == "completed"
        assert [t.state for t in _trials(worker)] == [TrialState.FAIL, TrialState.COMPLETE]
        assert worker.claim() is None  # the one planned trial is done
    finally:
        subprocess.run(["umount", str(runs)], check=True)


def test_a_trial_whose_checkpoint_cannot_be_read_starts_again_from_step_0(tmp_path):
    worker = _worker(tmp_path)
    # what a crash leaves: a run directory that did not finish, its checkpoint cut short
    run_dir = worker.sweep.run_dir("tune", "norm_placement=pre", 0)
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    assert _run_next(worker) == "completed"
    (trial,) = _trials(worker)
    assert trial.state == TrialState.COMPLETE
    assert "truncated or not a checkpoint" in trial.user_attrs["resume_refused"]
    assert "started again from step 0" in trial.user_attrs["resume_refused"]
    assert "resumed_from_step" not in trial.user_attrs
    assert (run_dir / "summary.json").is_file()

"""``bench train`` inside a Slurm job, without a cluster: which job it is in, where each
command records its run, and what a requeued command does with a run that had finished.

The real requeue (a batch script warned of its time limit) is in ``tests/test_slurm.py``.
"""

from __future__ import annotations

from pathlib import Path

from bench.cli import main
from bench.run import Run
from bench.training.slurm_job import (
    batch_job,
    job_run_dir,
    marker,
    ranks_stamp,
    remember,
)


def test_a_batch_job_is_recognised_and_an_interactive_allocation_is_not():
    assert batch_job({"SLURM_JOB_ID": "812", "SLURM_JOB_NAME": "train.sh"}) == "812"
    assert batch_job({"SLURM_JOB_ID": "812", "SLURM_JOB_NAME": "interactive"}) is None
    assert batch_job({"SLURM_JOB_NAME": "x"}) is None and batch_job({}) is None


def test_each_command_of_a_job_records_its_own_run(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    a, b = ["train.lr=0.1"], ["train.lr=0.2"]
    assert marker(tmp_path, "7", a) != marker(tmp_path, "7", b) != marker(tmp_path, "8", a)
    remember(tmp_path, "7", a, tmp_path / "run-a")
    assert job_run_dir(tmp_path, "7", a) == (tmp_path / "run-a").resolve()
    assert job_run_dir(tmp_path, "7", b) is None
    monkeypatch.setenv("SLURM_PROCID", "1")  # ranks > 0 follow rank 0 and record nothing
    remember(tmp_path, "7", b, tmp_path / "run-b")
    assert job_run_dir(tmp_path, "7", b) is None


def test_a_run_resumes_with_a_checkpoint_and_without_a_summary(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert not Run(run).resumable
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert Run(run).resumable
    (run / "summary.json").write_text("{}")
    assert not Run(run).resumable


def test_only_the_ranks_of_a_ddp_job_step_share_a_name_stamp(monkeypatch):
    for k, v in {"SLURM_NTASKS": "2", "SLURM_PROCID": "1", "SLURM_STEP_ID": "3"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SLURM_JOB_NAME", "train.sh")
    assert ranks_stamp("812", 2, 1) == "slurm812.3"
    assert ranks_stamp("812", 1, 1) is None  # one process: the usual time stamp


def test_a_requeued_command_whose_run_had_finished_does_not_train_again(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "812")
    monkeypatch.setenv("SLURM_JOB_NAME", "train.sh")
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    args = ["tracking.mode=disabled", f"tracking.out_dir={tmp_path / 'runs'}"]
    finished = tmp_path / "runs" / "done"
    finished.mkdir(parents=True)
    (finished / "summary.json").write_text("{}")
    remember(tmp_path / "runs", "812", args, finished)
    assert main(["train", *args]) == 0
    err = capsys.readouterr().err
    assert f"Slurm job 812 was requeued: {finished.resolve()} had already finished" in err
    assert sorted(p.name for p in Path(tmp_path / "runs").iterdir()) == [".slurm-jobs", "done"]

"""Preemption and resumption without Slurm: real signals, real Trainers, real W&B offline runs.

- a run preempted twice (SIGTERM, then the pre-timeout SIGUSR1) checkpoints at a
  step boundary each time, is recorded ``preempted``, and resumed ends with the
  metrics of an uninterrupted run; every attempt logs to the same W&B run id;
- a sweep trial whose worker was SIGKILLed is retried from the dead attempt's
  checkpoint, not from step 0 (the local launcher's crash path).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import optuna
import pytest
from conftest import TINY
from lightning.pytorch.callbacks import Callback
from optuna.trial import TrialState
from sweep_helpers import env_for_tests, one_cell_spec, wait_for, worker_cmd, write_spec
from wandb_runs import find_run_files, read_run

from bench.config import build_run_config
from bench.training.preemption import PREEMPTION, Preempted
from bench.training.run import train_run


class SignalAt(Callback):
    """Sends this process ``signum`` as training step ``step`` starts (a real signal)."""

    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, *args) -> None:
        if trainer.global_step == self.step and not PREEMPTION.requested:
            os.kill(os.getpid(), self.signum)


@pytest.fixture
def preemption():
    """This process handles preemption signals as a sweep worker does; restored afterwards."""
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}
    PREEMPTION.install()
    yield PREEMPTION
    PREEMPTION.reset()
    PREEMPTION.installed = False
    for s, h in old.items():
        signal.signal(s, h)


def test_a_run_preempted_twice_resumes_exactly_and_keeps_one_wandb_run(tmp_path, preemption):
    overrides = {**TINY, "train.max_steps": 30, "train.val_every": 10, "tracking.mode": "offline"}
    clean = train_run(
        build_run_config(overrides={**overrides, "tracking.run_dir": str(tmp_path / "clean")})
    )
    run_dir = tmp_path / "preempted"
    cfg = build_run_config(overrides={**overrides, "tracking.run_dir": str(run_dir)})
    stopped_at = []
    for step, signum in ((7, signal.SIGTERM), (18, signal.SIGUSR1)):
        resume = run_dir if stopped_at else None
        with pytest.raises(Preempted) as caught:
            train_run(cfg, [SignalAt(step, signum)], resume=resume)
        assert caught.value.signum == signum
        status = json.loads((run_dir / "status.json").read_text())
        assert status["status"] == "preempted" and status["step"] == step + 1
        assert (run_dir / "checkpoints/last.ckpt").is_file()
        stopped_at.append(status["step"])
        preemption.reset()
    resumed = train_run(cfg, resume=run_dir)

    assert resumed.status == "completed" and stopped_at == [8, 19]
    for key in ("val/loss", "val/acc", "train/loss", "best/val/loss", "best/step"):
        assert resumed.metrics[key] == clean.metrics[key], key
    # Three processes' worth of W&B records, one W&B run.
    files = find_run_files(run_dir / "wandb")
    assert len(files) == 3
    ids = {read_run(f).run_id for f in files}
    assert ids == {(run_dir / "wandb/run-id").read_text().strip()}


@pytest.mark.slow  # kills a real worker mid-trial and starts another: an end-to-end scenario
def test_a_retry_of_a_killed_workers_trial_resumes_from_its_checkpoint(tmp_path):
    spec = one_cell_spec(1, max_steps=400, val_every=100, checkpoint_every=10)
    path = write_spec(tmp_path / "s.yaml", spec)
    out = tmp_path / "sweep"
    first = subprocess.Popen(worker_cmd(path, out, "a"), env=env_for_tests())
    run0 = out / "runs" / "tune-norm_placement=pre-t0000"
    wait_for(lambda: (run0 / "checkpoints/last.ckpt").is_file(), timeout=180, every=0.1)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)

    again = subprocess.run(
        worker_cmd(path, out, "b"), env=env_for_tests(), capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "is gone; failed and re-enqueued" in again.stderr  # recovery.py found the orphan

    from bench.sweeps.storage import open_storage

    storage = open_storage(str(out / "journal.log"))
    (name,) = optuna.get_all_study_names(storage)
    dead, retry = optuna.load_study(study_name=name, storage=storage).trials
    assert dead.state == TrialState.FAIL and retry.state == TrialState.COMPLETE
    assert retry.system_attrs["failed_trial"] == 0
    assert retry.user_attrs["resumed_from_step"] >= 10  # from the dead attempt's checkpoint
    run1 = Path(retry.user_attrs["run_dir"])
    assert json.loads((run1 / "summary.json").read_text())["steps"] == 400
    assert run1 != run0 and (run0 / "checkpoints/last.ckpt").is_file()  # the dead attempt stays

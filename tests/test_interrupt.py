"""Ctrl-C on ``bench train`` prints the command that resumes that run, and it does resume.

Real subprocesses and real SIGINTs: the printed ``bench train --resume RUN_DIR``
is run as printed, continues the same run directory from its checkpoint, and
creates no new run.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

TINY = [
    "model.d_model=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "task.seq_len=4",
    "task.n_train=64",
    "task.n_val=8",
    "task.batch_size=8",
    "task.eval_scales=[1]",
    "train.max_steps=100000",
    "train.val_every=5",
    "train.threads=1",
    "train.precision=32-true",
    "tracking.mode=disabled",
    "diagnostics.gradients=false",
    "diagnostics.noise_scale=false",
    "diagnostics.attention_entropy=false",
    "diagnostics.throughput=false",
]


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait(predicate, proc: subprocess.Popen, timeout: float = 180.0, what: object = ""):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"timed out: {what() if callable(what) else what}; stderr: {err[-2000:]}")


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _interrupt(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_ctrl_c_prints_the_resume_command_and_that_command_resumes_the_run(tmp_path):
    runs = tmp_path / "runs"
    proc = _start(["train", *TINY, f"tracking.out_dir={runs}"], tmp_path)
    ckpt = _wait(lambda: next(runs.glob("*/checkpoints/last.ckpt"), None), proc)
    run_dir = ckpt.parent.parent
    code, err = _interrupt(proc)

    assert code == 130, err
    last = err.strip().splitlines()[-1]
    assert last == f"bench train: interrupted; resume with: bench train --resume {run_dir}", err
    assert "rerun the same command" not in err
    assert _status(run_dir)["status"] == "interrupted"

    # Run the printed command as printed: it continues this run from its checkpoint.
    printed = shlex.split(last.split("resume with: ", 1)[1])
    assert printed[:3] == ["bench", "train", "--resume"]
    resumed = _start(printed[1:], tmp_path)
    status = _wait(
        lambda: (s := _status(run_dir)).get("status") == "running" and s.get("started_step", 0) > 0,
        resumed,
        what=lambda: _status(run_dir),
    )
    assert status
    code, err = _interrupt(resumed)
    assert code == 130, err
    assert err.strip().splitlines()[-1].endswith(f"bench train --resume {run_dir}")
    assert [p.name for p in runs.iterdir()] == [run_dir.name]  # no new run was started


class _LoseOneCtrlC(Callback):
    """At step 3, a real SIGINT whose KeyboardInterrupt is lost, as Python loses one
    raised inside a weakref callback ("Exception ignored in ...")."""

    def __init__(self) -> None:
        self.lost_at: int | None = None

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == 3 and self.lost_at is None:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1.0)  # the handler runs here
            except KeyboardInterrupt:
                self.lost_at = trainer.global_step


def test_a_ctrl_c_whose_exception_was_lost_still_stops_the_run_at_the_next_step(tiny):
    from bench.training.run import RunInterrupted, train_run

    lose = _LoseOneCtrlC()
    cfg = tiny(**{"train.max_steps": 1000})
    with pytest.raises(RunInterrupted) as stopped:
        train_run(cfg, callbacks=[lose])
    assert lose.lost_at == 3
    status = _status(stopped.value.run_dir)
    assert status["status"] == "interrupted"
    assert status["step"] <= 4  # the next batch end, not the run's 1000 steps
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

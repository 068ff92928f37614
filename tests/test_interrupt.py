"""Ctrl-C on ``bench train`` prints the command that resumes that run, and it does resume.

Real subprocesses and real SIGINTs: the printed ``bench train --resume RUN_DIR``
is run as printed, continues the same run directory from its checkpoint, and
creates no new run.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

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

"""One small finished sweep per test session, made by the real ``bench sweep`` (piped).

``bench ls``, ``compare``, ``export``, the sweep-progress tests and ``test_sweep_run``
read it; none of them changes it (a test that would works on a copy). The launcher runs
in the test process (``tests/in_process.py``); its one worker is a real process. Two cells (pre / post), 2 tuning trials and 1 seed each, 10
steps a run with a validation every 5, gradient diagnostics on.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

from tests.in_process import bench_in_process
from tests.shared import made_once
from tests.sweep_helpers import env_for_tests, tiny_spec, write_spec

SPEC = tiny_spec(name="daily")
SPEC["base"]["train"].update(max_steps=10, val_every=5)
SPEC["base"]["diagnostics"].update(gradients=True, gradients_every=5)  # a diagnostic to compare


@cache
def finished_sweep() -> tuple[Path, subprocess.CompletedProcess]:
    """(sweep directory, the piped ``bench sweep`` process that made it), made once a session."""
    root, (args, code, stdout, stderr) = made_once("daily", _make)
    proc = subprocess.CompletedProcess(args, code, stdout, stderr)
    assert proc.returncode == 0, proc.stderr
    return _out(root), proc


def _out(root: Path) -> Path:
    return root / "runs" / "sweeps" / "daily"


def _make(root: Path) -> list:
    spec = write_spec(root / "daily.yaml", SPEC)
    proc = bench_in_process(
        "sweep",
        str(spec),
        "--workers",
        "1",
        "--out",
        str(_out(root)),
        env=env_for_tests(),
        cwd=root,
    )
    return [proc.args, proc.returncode, proc.stdout, proc.stderr]

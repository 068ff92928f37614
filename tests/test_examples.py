"""``examples/``: every ready spec is valid, every local one plans with ``--dry-run``, and the
notebook script runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.sweeps import preflight
from bench.sweeps.launcher import run_sweep
from bench.sweeps.spec import load_spec

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
LOCAL = [p for p in EXAMPLES if load_spec(p).launcher.name == "local"]


def test_the_examples_ask_the_researchers_questions():
    names = {p.stem for p in EXAMPLES}
    assert {"heads", "my-corpus", "search", "slurm"} <= names


@pytest.mark.parametrize("spec", LOCAL, ids=[p.stem for p in LOCAL])
def test_a_local_example_plans_with_dry_run_and_creates_nothing(
    spec, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(spec.parent.parent)  # relative task.paths, as in the README's commands
    # Every cell's data and model are still built and checked; only the step timing is
    # skipped here (test_sweep_tuning's dry-run test times real steps).
    monkeypatch.setattr(preflight, "time_steps", lambda cfg, threads: 0.01)
    assert run_sweep(spec, workers=2, dry_run=True, out=tmp_path / "sweep") == 0
    out = capsys.readouterr().out
    assert "runs of" in out and "with 2 worker(s)" in out
    assert not (tmp_path / "sweep").exists()


def test_the_slurm_example_names_its_cluster_resources():
    launcher = load_spec(next(p for p in EXAMPLES if p.stem == "slurm")).launcher
    assert launcher.name == "slurm"
    assert (launcher.workers, launcher.gpus_per_worker, launcher.partition) == (8, 1, "gpu")


@pytest.mark.slow  # trains 8 tiny runs, 2 in-process and 6 in a sweep worker: about a minute
def test_the_notebook_script_trains_sweeps_and_reads_both_as_dataframes(tmp_path):
    shutil.copytree(EXAMPLES_DIR, tmp_path / "examples")  # run as from the repository's root
    proc = subprocess.run(
        [sys.executable, "examples/notebook.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "pre-LN: completed" in out and "post-LN: completed" in out
    assert "norm_placement       pre      post" in out  # the two val/loss curves side by side
    table = [line for line in out.splitlines() if line.split()[1:2] == ["norm_placement=pre"]]
    assert len(table) == 3  # 2 tuning trials and 1 seed run of the pre-LN cell
    assert (tmp_path / "runs" / "sweeps" / "notebook" / "sweep.json").is_file()

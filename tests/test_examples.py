"""``examples/``: every ready spec is valid, and every local one plans with ``--dry-run``."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.sweeps.launcher import run_sweep
from bench.sweeps.spec import load_spec

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))
LOCAL = [p for p in EXAMPLES if load_spec(p).launcher.name == "local"]


def test_the_examples_ask_the_researchers_questions():
    names = {p.stem for p in EXAMPLES}
    assert {"heads", "my-corpus", "search", "slurm"} <= names


@pytest.mark.parametrize("spec", LOCAL, ids=[p.stem for p in LOCAL])
def test_a_local_example_plans_with_dry_run_and_creates_nothing(
    spec, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(spec.parent.parent)  # relative task.paths, as in the README's commands
    assert run_sweep(spec, workers=2, dry_run=True, out=tmp_path / "sweep") == 0
    out = capsys.readouterr().out
    assert "runs of" in out and "with 2 worker(s)" in out
    assert not (tmp_path / "sweep").exists()


def test_the_slurm_example_names_its_cluster_resources():
    launcher = load_spec(next(p for p in EXAMPLES if p.stem == "slurm")).launcher
    assert launcher.name == "slurm"
    assert (launcher.workers, launcher.gpus_per_worker, launcher.partition) == (8, 1, "gpu")

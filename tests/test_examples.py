"""``examples/``: every ready spec is valid, every local one plans with ``--dry-run``, the
notebook script runs, and the sweep over this decade's variants runs every cell."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bench.config import ConfigError
from bench.sweeps import preflight
from bench.sweeps.launcher import run_sweep
from bench.sweeps.spec import load_spec

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
LOCAL = [p for p in EXAMPLES if load_spec(p).launcher.name == "local"]


def test_the_examples_ask_the_researchers_questions():
    names = {p.stem for p in EXAMPLES}
    assert {"heads", "multi-gpu", "my-corpus", "search", "slurm", "variants-2025"} <= names


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


@pytest.mark.skipif(torch.cuda.is_available(), reason="about a machine without a GPU")
def test_a_multi_gpu_plan_previews_without_gpus_but_does_not_start(tmp_path, capsys, monkeypatch):
    spec = EXAMPLES_DIR / "multi-gpu.yaml"
    monkeypatch.setattr(preflight, "time_steps", lambda cfg, threads: 0.01)
    assert run_sweep(spec, devices="0,1,2,3", dry_run=True, out=tmp_path / "sweep") == 0
    out = capsys.readouterr().out
    assert "with 4 worker(s)" in out  # one a GPU, as on the machine that has them
    assert "no GPU is visible here" in out and "this machine's CPU's" in out
    with pytest.raises(ConfigError, match="no GPU is visible here; use --devices cpu"):
        run_sweep(spec, devices="0,1,2,3", out=tmp_path / "sweep")
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


def test_the_variants_sweep_has_a_cell_for_every_axis_this_decades_papers_added():
    from bench.config.citations import CITATIONS

    spec = load_spec(EXAMPLES_DIR / "variants-2025.yaml")
    files = [EXAMPLES_DIR.parent / v for v in spec.compare["variant"]]  # type: ignore[index]
    settings = [yaml.safe_load(f.read_text()) for f in files]
    for s in settings:
        s.pop("description")
    covered = {f"model.{k}={v}" for s in settings for k, v in s.items()}
    covered |= {f"model.{k}" for s in settings for k in s} | {"train.z_loss"}
    variants = {key for key in CITATIONS if not key.startswith("model.rope_scaling=")}
    assert variants - {"model.attention=gated_headwise"} <= covered  # one scaling, one gate
    assert {"model.rope_scaling=yarn", "model.attention=gated"} <= covered
    assert spec.compare["train.z_loss"] == [0.0, 1.0e-4]  # type: ignore[index]
    assert len(spec.cells()) == 2 * len(files) and spec.seeds == 0 and spec.tune is None


@pytest.mark.slow  # 24 runs of 30 steps in 2 real workers: about 2 minutes on 2 cores
def test_the_variants_sweep_runs_every_cell_to_completion(tmp_path):
    from sweep_helpers import env_for_tests

    from bench.run import Run
    from bench.sweeps.layout import open_sweep_dir
    from bench.sweeps.trials import read_trial

    out = tmp_path / "sweep"
    proc = subprocess.run(  # from the repository's root, as the spec's comment says
        [
            *(sys.executable, "-m", "bench", "sweep", "examples/variants-2025.yaml"),
            *("--workers", "2", "--devices", "cpu", "--out", str(out)),
        ],
        cwd=EXAMPLES_DIR.parent,
        env=env_for_tests(),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweep = open_sweep_dir(out)
    assert Path(sweep.storage_url).name == "journal.log"  # Optuna's journal storage
    studies = sweep.studies()
    cells = dict(sweep.spec.cells())
    assert len(cells) == 24 and len(studies) == 24
    for name, study in studies.items():
        (trial,) = [read_trial(name, t) for t in study.get_trials()]
        assert trial.outcome == "complete", (trial.cell, trial.reason)
        run = Run.load(trial.run_dir)
        assert run.status.get("status") == "completed" and run.summary, trial.cell
        preset = yaml.safe_load(Path(cells[trial.cell]["variant"]).read_text())
        preset.pop("description")
        model = run.config["model"]
        assert {k: model[k] for k in preset} == preset, trial.cell  # the cell's variant ran
        assert run.config["train"]["z_loss"] == cells[trial.cell]["train.z_loss"]
        assert {"val/loss@6", "val/loss@12"} <= set(run.summary["metrics"])  # 1x and 2x

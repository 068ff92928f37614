"""bench from Python: ``bench.train``, ``bench.sweep``, ``bench.load_run``, ``bench.load_sweep``,
``bench.build_report`` and ``bench.run_config``, as a notebook would call them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import TINY
from sweep_helpers import tiny_spec, write_spec

import bench
from bench.config import ConfigError, RunConfig
from tests.finished_sweep import finished_sweep


def test_importing_bench_loads_no_torch_lightning_or_optuna():
    code = (
        "import sys, bench; bench.__all__; "
        "print([m for m in ('torch', 'lightning', 'optuna') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_takes_dotted_overrides_and_the_run_reads_back(tmp_path):
    result = bench.train({**TINY, "tracking.out_dir": str(tmp_path)})
    assert result.status == "completed"
    run = bench.load_run(result.run_dir)
    assert run.finished and run.flat_config()["model.d_model"] == TINY["model.d_model"]
    assert run.final_metrics()["val/loss"] == pytest.approx(result.metrics["val/loss"])
    assert len(run.history()) > 0


def test_run_config_applies_a_variant_and_refuses_a_bad_key_in_one_line():
    cfg = bench.run_config({"variant": "llama", "model.n_heads": 8})
    assert isinstance(cfg, RunConfig)
    assert cfg.model.pos_encoding == "rope" and cfg.model.n_heads == 8
    with pytest.raises(ConfigError, match="n_headz"):
        bench.run_config({"model.n_headz": 8})


def test_a_finished_sweep_loads_as_rows_and_reports(tmp_path):
    sweep_dir = finished_sweep()[0]
    data = bench.load_sweep(sweep_dir)
    assert len(data.rows) == 6 and {r["cell"] for r in data.rows} == set(data.cells)
    out = bench.build_report(sweep_dir, tmp_path / "report")
    assert (out / "index.html").is_file() and (out / "runs.csv").is_file()


def test_a_bad_sweep_spec_is_refused_before_anything_starts(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", {**tiny_spec(), "seedz": 1})
    with pytest.raises(ConfigError, match="seedz"):
        bench.sweep(spec, out=tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow  # real worker processes
def test_sweep_runs_a_spec_and_returns_its_directory(tmp_path):
    spec = tiny_spec(compare={"model.norm_placement": ["pre"]}, seeds=0)
    out = bench.sweep(write_spec(tmp_path / "s.yaml", spec), workers=1, out=tmp_path / "sweep")
    assert out == tmp_path / "sweep"
    assert len(bench.load_sweep(out).rows) == spec["tune"]["trials"]

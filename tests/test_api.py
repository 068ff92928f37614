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
from bench.extras import MissingExtra
from bench.report.collect import flat_rows
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


# ----------------------------------------------------------------------------- to_pandas


def test_a_run_reads_as_a_dataframe_with_one_row_per_logged_step(trained_run):
    run = bench.load_run(trained_run)
    history = run.history()
    frame = run.to_pandas()
    steps = sorted({int(r["step"]) for r in history})
    assert frame.index.name == "step" and list(frame.index) == steps
    assert len(frame) < len(history)  # a step's training and validation lines are one row
    for row in history:  # every logged value is in its step's row
        for key, value in row.items():
            if key != "step":
                assert frame.loc[int(row["step"]), key] == pytest.approx(value), (row, key)
    both = frame.dropna(subset=["train/loss", "val/loss"])
    assert len(both) > 0


def test_a_run_without_a_history_is_an_empty_dataframe(tmp_path):
    frame = bench.load_run(tmp_path).to_pandas()
    assert frame.empty and frame.index.name == "step"


def test_a_sweep_reads_as_a_dataframe_with_one_row_per_trial():
    data = bench.load_sweep(finished_sweep()[0])
    frame = data.to_pandas()
    cols, rows = flat_rows(data)
    assert list(frame.columns) == cols and len(frame) == len(rows) == 6
    assert set(frame["norm_placement"]) == {"pre", "post"}
    assert sorted(frame["phase"]) == ["seed", "seed", "tune", "tune", "tune", "tune"]
    assert frame["val/loss"].tolist() == pytest.approx([r["val/loss"] for r in rows])
    # what does not apply is missing, not "" (runs.csv's blank); counts stay whole numbers
    assert "" in {r["reason"] for r in rows} and frame["reason"].isna().all()
    assert {str(frame[c].dtype) for c in ("trial", "seed", "steps")} == {"Int64"}
    assert set(frame["steps"]) == {10}
    best = frame.groupby("cell")["val/loss"].min()
    assert set(best.index) == set(data.cells)


@pytest.mark.parametrize("what", ["run", "sweep"])
def test_to_pandas_without_pandas_names_the_extra_to_install(what, trained_run, monkeypatch):
    loaded = bench.load_run(trained_run) if what == "run" else bench.load_sweep(finished_sweep()[0])
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(MissingExtra) as err:
        loaded.to_pandas()
    assert "pip install 'bench[notebook]'" in str(err.value)
    assert "\n" not in str(err.value) and isinstance(err.value, ImportError)

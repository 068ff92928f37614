"""The report of a real sweep: Optuna journal storage, a worker, real training runs."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
from report_helpers import make_sweep, standard_cells
from sweep_helpers import tiny_spec, write_spec

from bench.report import build_report
from bench.report.analysis import cell_summaries, comparisons
from bench.report.collect import load_sweep


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory):
    """2 cells x (1 tuning trial + 3 seed runs), trained for real by one in-process worker,
    long enough that both cells learn the copy task (so they enter the comparison)."""
    from bench.sweeps import run_worker

    root = tmp_path_factory.mktemp("real")
    spec = tiny_spec(
        name="real",
        seeds=3,
        tune={"params": {"train.lr": {"low": 3e-2, "high": 3e-2}}, "trials": 1},
    )
    spec["base"]["task"]["eval_scales"] = [1, 2]
    # 90 steps: every run learns (best val/loss 0.12-1.06 against a chance of 1.78)
    spec["base"]["train"].update(max_steps=90, val_every=30)
    path = write_spec(root / "spec.yaml", spec)
    assert run_worker(str(path), out=str(root / "sweep"), worker_id="w0", threads=1) == 0
    return root / "sweep"


# Both tests that read the trained sweep run on one xdist worker, so it is trained once.
@pytest.mark.xdist_group("real_sweep")
def test_report_of_a_real_sweep_covers_every_trial_and_cell(real_sweep, tmp_path):
    out = build_report(real_sweep, tmp_path / "report")
    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["phase"], r["norm_placement"]) for r in rows) == sorted(
        [("tune", "pre"), ("tune", "post")] + [("seed", "pre"), ("seed", "post")] * 3
    )
    assert all(r["status"] == "completed" and r["has_summary"] == "True" for r in rows)
    assert all(float(r["best/val/loss"]) > 0 and r["val/loss@12"] for r in rows)  # seq_len 6 x 2
    assert {r["seed"] for r in rows if r["phase"] == "seed"} == {"1", "2", "3"}
    assert (out / "figures" / "learning_curves.png").is_file()
    assert (out / "figures" / "lr_sensitivity.png").is_file()
    md = (out / "report.md").read_text()
    assert "Nothing missing" in md
    assert "| pre | 3 |" in md and "| post | 3 |" in md


@pytest.mark.xdist_group("real_sweep")
def test_real_seed_runs_give_a_ci_and_a_verdict(real_sweep):
    data = load_sweep(real_sweep)
    summaries = cell_summaries(data)
    assert [s.source for s in summaries] == ["seed runs", "seed runs"]
    assert all(
        s.quality.n == 3 and s.quality.lo <= s.quality.mean <= s.quality.hi for s in summaries
    )
    (c,) = comparisons(data, summaries)
    assert all(s.learning.status == "learned" for s in summaries)
    assert (c.axis, c.a, c.b, c.n_a, c.n_b) == ("norm_placement", "pre", "post", 3, 3)
    assert c.lo is not None and c.lo <= c.diff <= c.hi
    assert c.verdict in ("significant", "not significant", "inconclusive")


def test_report_never_imports_torch_or_lightning(tmp_path):
    sweep = make_sweep(tmp_path, standard_cells())
    code = (
        "import sys\n"
        "from bench.report import build_report\n"
        f"build_report({str(sweep)!r}, {str(tmp_path / 'out')!r})\n"
        "print(sorted(m for m in ('torch', 'lightning', 'bench.model') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_search_mode_reports_the_seeded_winner_and_every_tuning_trial(tmp_path):
    from bench.sweeps import run_worker

    spec = tiny_spec(name="srch", compare=None, tune=None, seeds=2)
    spec["search"] = {
        "params": {
            "model.norm_placement": ["pre", "post"],
            "train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
        },
        "trials": 3,
    }
    path = write_spec(tmp_path / "spec.yaml", spec)
    assert run_worker(str(path), out=str(tmp_path / "sweep"), worker_id="w0", threads=1) == 0
    data = load_sweep(tmp_path / "sweep")
    summaries = cell_summaries(data)
    (winner,) = summaries  # the search study itself is no cell once its best is seeded
    assert winner.source == "seed runs" and winner.quality.n == 2
    assert winner.axes["norm_placement"] in ("pre", "post")
    out = build_report(tmp_path / "sweep", tmp_path / "report")
    with open(out / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    tune = [r for r in rows if r["phase"] == "search"]
    assert len(tune) == 3 and all(r["norm_placement"] in ("pre", "post") for r in tune)
    assert (out / "figures" / "lr_sensitivity.png").is_file()

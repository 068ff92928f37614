"""Compare mode tunes every cell fairly: the same deterministic points, pruning only
of hopeless runs, and sweeps that fail loudly. Real journal storages, real workers."""

from __future__ import annotations

import itertools
import math
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import PYTHON, env_for_tests, tiny_spec, write_spec

from bench.config import ConfigError
from bench.sweeps import tuning
from bench.sweeps.layout import prepare_sweep
from bench.sweeps.spec import TuneSpec, parse_spec
from bench.sweeps.study import tally
from bench.sweeps.worker import run_worker
from tests.in_process import bench_in_process


def _bench(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "bench", *args],
        env=env_for_tests(),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def _trials(out: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "journal.log"))
    )
    return {
        s.study_name: optuna.load_study(study_name=s.study_name, storage=storage).get_trials()
        for s in optuna.get_all_study_summaries(storage)
    }


# ----------------------------------------------------------------------------- the points


def test_one_log_range_gets_a_log_spaced_grid_from_bound_to_bound():
    space = TuneSpec(params={"train.lr": {"low": 1e-3, "high": 3e-2, "log": True}})
    lrs = [p["train.lr"] for p in tuning.points(space)]
    assert len(lrs) == tuning.DEFAULT_POINTS == 5
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(3e-2)
    ratios = [b / a for a, b in itertools.pairwise(lrs)]
    assert all(r == pytest.approx(ratios[0], rel=1e-3) for r in ratios)  # geometric


def test_two_parameters_get_the_same_quasi_random_points_inside_their_box():
    space = TuneSpec(
        params={
            "train.lr": {"low": 1e-4, "high": 1e-1, "log": True},
            "train.weight_decay": {"low": 0.0, "high": 0.3},
        },
        trials=8,
        points=8,
    )
    first, again = tuning.points(space, seed=0), tuning.points(space, seed=0)
    assert first == again and len(first) == 8
    assert all(1e-4 <= p["train.lr"] <= 1e-1 and 0 <= p["train.weight_decay"] <= 0.3 for p in first)
    # covers the log range: some point in each decade
    decades = {math.floor(math.log10(p["train.lr"])) for p in first}
    assert decades == {-4, -3, -2}


def test_compare_mode_defaults_to_the_grid_three_seeds_and_chance_pruning():
    spec = parse_spec(
        tiny_spec(
            tune={"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}},
            seeds=None,
            pruner=None,
        )
    )
    assert tuning.method(spec) == "grid" and spec.seeds == 3 and spec.effective_pruner == "chance"
    assert "the same 5 points (a log-spaced grid" in tuning.describe(spec)["description"]


def test_trials_past_the_points_are_proposed_by_tpe():
    spec = parse_spec(
        tiny_spec(
            tune={"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "trials": 7}
        )
    )
    d = tuning.describe(spec)
    assert d["points"] == 5 and d["description"].endswith("then 2 TPE trials")


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_a_pruner_relative_to_other_trials_is_refused_in_compare_mode(pruner):
    with pytest.raises(ConfigError, match=rf"pruner='{pruner}' compares a trial's early curve"):
        parse_spec(tiny_spec(pruner=pruner))


def test_every_cell_study_holds_the_same_points_once_even_when_prepared_twice(tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml",
        tiny_spec(
            tune={"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "trials": 3}
        ),
    )
    prepare_sweep(spec, out=tmp_path / "sweep")
    prepare_sweep(spec, out=tmp_path / "sweep")  # a rerun, or a second machine joining
    studies = {k: v for k, v in _trials(tmp_path / "sweep").items() if "/tune/" in k}
    assert len(studies) == 2
    grids = [[t.system_attrs["fixed_params"]["train.lr"] for t in ts] for ts in studies.values()]
    assert grids[0] == grids[1] and len(grids[0]) == 3
    assert all(t.state == TrialState.WAITING for ts in studies.values() for t in ts)
    # an enqueued point holds no slot until it starts
    assert all(tally(ts).used == 0 for ts in studies.values())


# ----------------------------------------------------------------------------- real sweeps


@pytest.mark.slow  # two real workers on two cores: an end-to-end scenario
def test_two_workers_run_each_point_of_each_cell_exactly_once(tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml",
        tiny_spec(
            tune={"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "trials": 3},
            seeds=0,
        ),
    )
    out = tmp_path / "sweep"
    proc = _bench("sweep", str(spec), "--workers", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, trials in _trials(out).items():
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        lrs = sorted(t.params["train.lr"] for t in done)
        assert lrs == pytest.approx([1e-3, 10**-2.5, 1e-2], rel=1e-4), name


def test_only_runs_still_worse_than_chance_at_half_their_steps_are_pruned(tmp_path):
    spec = tiny_spec(
        tune={"params": {"train.lr": {"low": 1e-6, "high": 3e-2, "log": True}}, "trials": 2},
        compare={"model.norm_placement": ["pre"]},
        seeds=0,
        pruner=None,  # the compare-mode default: chance
    )
    spec["base"]["train"].update(max_steps=120, val_every=20)
    out = tmp_path / "sweep"
    spec_path = write_spec(tmp_path / "s.yaml", spec)
    assert run_worker(str(spec_path), out=str(out), worker_id="0", threads=1) == 0
    (trials,) = _trials(out).values()
    hopeless, good = sorted(trials, key=lambda t: t.params["train.lr"])
    assert hopeless.params["train.lr"] == pytest.approx(1e-6)
    assert hopeless.state == TrialState.PRUNED
    reason = hopeless.user_attrs["reason"]
    assert reason.startswith("pruned at step 60: val/loss") and "worse than chance" in reason
    assert good.state == TrialState.COMPLETE and good.user_attrs["learning"] == "learned"
    # intermediate values are reported for the dashboard, but nothing before half the steps prunes
    assert min(hopeless.intermediate_values) == 20


def test_a_task_that_cannot_be_built_fails_before_anything_is_created(tmp_path):
    spec = tiny_spec()
    # recall needs at least as many symbols as pairs at its longest eval length
    spec["base"]["task"].update(name="recall", n_symbols=4, seq_len=6, eval_scales=[1, 2])
    out = tmp_path / "sweep"
    proc = bench_in_process("sweep", str(write_spec(tmp_path / "s.yaml", spec)), "--out", str(out))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "compare cell norm_placement=pre" in lines[0], lines
    assert "Traceback" not in proc.stderr and not out.exists()


def test_a_cell_whose_every_trial_failed_makes_the_sweep_exit_non_zero(tmp_path):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_spec(seeds=0))
    out = tmp_path / "sweep"
    sweep = prepare_sweep(spec_path, out=out)
    # A file where the post cell's run directories go: those trials cannot start.
    for n in range(2):
        sweep.run_dir("tune", "norm_placement=post", n).write_text("in the way\n")
    proc = bench_in_process("sweep", str(spec_path), "--out", str(out))  # a real worker process
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert (
        "error: every trial of cell norm_placement=post failed; first error: FileExistsError"
        in proc.stderr
    )
    assert "norm_placement=pre" not in proc.stderr  # the healthy cell is not blamed
    status = bench_in_process("status", str(out))
    assert status.returncode == 0
    assert "trials that did not complete" in status.stdout and "FileExistsError" in status.stdout


def test_dry_run_lists_cells_points_runs_and_time_and_creates_nothing(tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml",
        tiny_spec(
            tune={"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "trials": 3},
            seeds=2,
        ),
    )
    proc = bench_in_process("sweep", str(spec), "--dry-run", "--workers", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "norm_placement=pre" in text and "norm_placement=post" in text
    assert "point 0: train.lr=0.001" in text and "point 2: train.lr=0.01" in text
    assert "10 runs of 20 steps" in text and "with 2 worker(s)" in text
    assert not (tmp_path / "runs").exists()

"""Sweeps end to end: real worker processes, real Lightning trials, a real journal storage.

What must hold: budgets are spent exactly, the seed phase re-runs each cell's best,
rerunning resumes without repeating a completed trial, a killed worker's trial is
failed and retried, Ctrl-C leaves the storage consistent and resumable, a diverging
trial is recorded as such, pruning stops a Trainer.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState
from sweep_helpers import (
    PYTHON,
    env_for_tests,
    run_module,
    tiny_spec,
    wait_for,
    worker_cmd,
    write_spec,
)

from bench.sweeps.layout import open_sweep_dir
from bench.sweeps.objective import PruningCallback
from bench.sweeps.study import tally
from bench.sweeps.worker import run_worker
from tests.finished_sweep import SPEC as FINISHED_SPEC
from tests.finished_sweep import finished_sweep

NAME = FINISHED_SPEC["name"]


def trials_of(sweep_dir: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """study name -> its trials, read back from the sweep's storage."""
    sweep = open_sweep_dir(sweep_dir)
    storage = sweep.open_storage()
    return {
        name: optuna.load_study(study_name=name, storage=storage).get_trials()
        for name in optuna.get_all_study_names(storage)
    }


def assert_sweep_finished(sweep_dir: Path, cells: int, budget: int, seeds: int) -> None:
    studies = trials_of(sweep_dir)
    tune = {k: v for k, v in studies.items() if "/tune/" in k}
    assert len(tune) == cells
    for name, trials in tune.items():
        t = tally(trials)
        assert t.done == budget and t.active == 0, (name, t.counts)
    if seeds:
        t = tally(studies[f"{yaml.safe_load((sweep_dir / 'spec.yaml').read_text())['name']}/seeds"])
        assert t["complete"] == cells * seeds and t.active == 0, t.counts


@pytest.fixture(scope="module")
def finished() -> Path:
    """The session's finished compare sweep (``tests/finished_sweep.py``): one worker ran
    2 cells x 2 tuning trials, then a seed run of each cell's best."""
    return finished_sweep()[0]


def test_a_worker_spends_each_cells_budget_then_runs_the_seeds(finished):
    out = finished
    assert_sweep_finished(out, cells=2, budget=2, seeds=1)


def test_every_trial_records_cell_phase_seed_status_and_its_run_directory(finished):
    out = finished
    for trials in trials_of(out).values():
        for t in trials:
            a = t.user_attrs
            assert a["status"] == "completed" and a["phase"] in ("tune", "seed")
            assert a["cell"].startswith("norm_placement=")
            run_dir = Path(a["run_dir"])
            assert run_dir.parent == out / "runs"
            assert (run_dir / "summary.json").is_file()
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
            assert cfg["tracking"]["group"] == NAME
            assert cfg["tracking"]["job_type"] == a["phase"]
            assert cfg["tracking"]["meta"]["cell"] == a["cell"]
            assert cfg["model"]["norm_placement"] == a["cell"].split("=")[1]
            assert a["metrics"]["val/loss"] == pytest.approx(t.values[0])
            if a["phase"] == "seed":
                assert cfg["train"]["seed"] == a["seed"] == 1


def test_seed_runs_reuse_the_best_tuned_configuration_of_their_cell(finished):
    studies = trials_of(finished)
    for t in studies[f"{NAME}/seeds"]:
        cell = t.user_attrs["cell"]
        best = min(studies[f"{NAME}/tune/{cell}"], key=lambda x: x.values[0])
        assert json.loads(t.user_attrs["overrides"])["train.lr"] == best.params["train.lr"]


def test_rerunning_a_finished_sweep_runs_no_trial_again(finished, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(finished, out)  # the session's sweep stays as it was for other tests
    before = {k: [t.number for t in v] for k, v in trials_of(out).items()}
    runs_before = sorted(p.name for p in (out / "runs").iterdir())
    assert run_worker(str(out), out=str(out), worker_id="again") == 0
    assert {k: [t.number for t in v] for k, v in trials_of(out).items()} == before
    assert sorted(p.name for p in (out / "runs").iterdir()) == runs_before


def test_status_prints_a_row_per_cell_from_the_directory_or_the_journal(finished, capsys):
    from bench.sweeps.progress.status import print_status

    out = finished
    assert print_status(out) == 0
    text = capsys.readouterr().out
    assert "norm_placement=pre" in text and "norm_placement=post" in text and "2/2" in text
    assert print_status(str(out / "journal.log")) == 0
    assert f"{NAME}/seeds" in capsys.readouterr().out


def test_a_diverging_trial_is_recorded_as_diverged_and_the_sweep_goes_on(tmp_path):
    spec = tiny_spec(
        compare={"model.norm_placement": ["pre"]},
        tune={"params": {"train.lr": [1.0e4, 3.0e-3]}, "trials": 2, "sampler": "grid"},
        seeds=0,
    )
    spec["base"]["train"].update(grad_clip=None, warmup_steps=0)
    out = tmp_path / "sweep"
    assert run_worker(str(write_spec(tmp_path / "s.yaml", spec)), out=str(out), worker_id="0") == 0
    trials = trials_of(out)["tiny/tune/norm_placement=pre"]
    by_lr = {t.params["train.lr"]: t for t in trials}
    assert (
        by_lr[1.0e4].state == TrialState.PRUNED and by_lr[1.0e4].user_attrs["status"] == "diverged"
    )
    assert "non-finite" in by_lr[1.0e4].user_attrs["reason"]
    assert by_lr[3.0e-3].state == TrialState.COMPLETE
    counts = tally(trials)
    assert (counts["diverged"], counts["complete"], counts["pruned"]) == (1, 1, 0)


def test_pruning_callback_stops_the_trainer_when_the_trial_is_worse_than_the_median(tmp_path):
    from bench.config import build_run_config
    from bench.training.run import train_run

    torch.manual_seed(0)
    study = optuna.create_study(
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    )
    study.add_trial(optuna.create_trial(value=0.0, intermediate_values={10: 0.0, 20: 0.0, 30: 0.0}))
    trial = study.ask()
    base = tiny_spec()["base"]
    cfg = build_run_config(
        overrides={**_flat(base), "train.max_steps": 30, "tracking.run_dir": str(tmp_path / "r")}
    )
    callback = PruningCallback(trial, "val/loss")
    result = train_run(cfg, [callback])
    assert callback.pruned_at == 10
    assert result.status == "stopped"
    assert study.trials[-1].intermediate_values.keys() == {10}


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _launch(spec: Path, out: Path, workers: int) -> subprocess.Popen:
    cmd = [
        PYTHON,
        "-m",
        "bench",
        "sweep",
        str(spec),
        "--out",
        str(out),
        "--workers",
        str(workers),
        "--devices",
        "cpu",
    ]
    return subprocess.Popen(
        cmd, env=env_for_tests(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _running_trial(out: Path, worker_id: str) -> dict | None:
    """The trial a worker reports it is running, once the storage agrees and training started."""
    f = out / "workers" / f"{worker_id}.json"
    try:
        state = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    run_dirs = list((out / "runs").glob(f"*-t{state['number']:04d}"))
    return state if any((d / "status.json").is_file() for d in run_dirs) else None


@pytest.mark.slow
def test_a_killed_worker_has_its_trial_failed_and_retried_and_the_sweep_completes(tmp_path):
    spec = tiny_spec(compare={"model.norm_placement": ["pre"]}, seeds=0)
    spec["base"]["train"]["max_steps"] = 60
    out = tmp_path / "sweep"
    launcher = _launch(write_spec(tmp_path / "s.yaml", spec), out, workers=1)
    try:
        state = wait_for(lambda: _running_trial(out, "0"), timeout=180)
        import os

        os.kill(state["pid"], signal.SIGKILL)
        _, err = launcher.communicate(timeout=300)
    finally:
        launcher.kill()
    assert launcher.returncode == 0, err[-3000:]
    assert "died (signal SIGKILL)" in err
    trials = trials_of(out)["tiny/tune/norm_placement=pre"]
    killed = trials[state["number"]]
    assert killed.state == TrialState.FAIL and "SIGKILL" in killed.user_attrs["reason"]
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    assert_sweep_finished(out, cells=1, budget=2, seeds=0)


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_cleanly_and_the_rerun_resumes(tmp_path):
    spec_path = write_spec(tmp_path / "s.yaml", tiny_spec())
    spec_path.write_text(spec_path.read_text().replace("max_steps: 20", "max_steps: 60"))
    out = tmp_path / "sweep"
    launcher = _launch(spec_path, out, workers=2)
    try:
        wait_for(lambda: _running_trial(out, "0") or _running_trial(out, "1"), timeout=180)
        launcher.send_signal(signal.SIGINT)
        _, err = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode == 130, err[-3000:]
    studies = trials_of(out)
    everything = [t for ts in studies.values() for t in ts]
    assert not [t for t in everything if t.state == TrialState.RUNNING]
    interrupted = [
        t
        for t in everything
        if t.user_attrs.get("status") == "interrupted" and t.state == TrialState.FAIL
    ]
    assert interrupted
    for t in interrupted:
        # A trial stopped right after it was claimed has no run directory yet, and one
        # stopped before train_run wrote anything has no status.json.
        run_dir = t.user_attrs.get("run_dir")
        status_file = Path(run_dir) / "status.json" if run_dir else None
        if status_file is not None and status_file.exists():
            status = json.loads(status_file.read_text())
            # killed before training started: still "running"
            assert status["status"] in ("interrupted", "running")
        assert any(w.system_attrs.get("failed_trial") == t.number for w in everything)
    done_before = {(t.user_attrs["run_dir"]) for t in everything if t.state == TrialState.COMPLETE}

    rerun = _launch(spec_path, out, workers=2)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert_sweep_finished(out, cells=2, budget=2, seeds=1)
    after = [t for ts in trials_of(out).values() for t in ts]
    completed_dirs = [t.user_attrs["run_dir"] for t in after if t.state == TrialState.COMPLETE]
    assert len(completed_dirs) == len(set(completed_dirs)) and done_before <= set(completed_dirs)


@pytest.mark.slow
def test_a_trial_spanning_two_cpu_processes_runs_with_ddp(tmp_path):
    spec = tiny_spec(compare={"model.norm_placement": ["pre"]}, seeds=0, pruner="chance")
    spec["base"]["train"].update(devices=2, accelerator="cpu")
    spec["tune"]["trials"] = 2
    out = tmp_path / "sweep"
    proc = subprocess.run(
        worker_cmd(write_spec(tmp_path / "s.yaml", spec), out, "0"),
        env=env_for_tests(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_sweep_finished(out, cells=1, budget=2, seeds=0)
    for t in trials_of(out)["tiny/tune/norm_placement=pre"]:
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["world_size"] == 2  # both DDP ranks trained


def test_the_dashboard_serves_the_sweeps_studies(finished, tmp_path):
    import socket
    import urllib.request

    out = finished
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [PYTHON, "-m", "bench", "dashboard", str(out), "--port", str(port)],
        env=env_for_tests(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def studies():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        data = wait_for(studies, timeout=60, every=0.5)
        names = {s["study_name"] for s in data["study_summaries"]}
        assert names == {
            f"{NAME}/tune/norm_placement=pre",
            f"{NAME}/tune/norm_placement=post",
            f"{NAME}/seeds",
        }
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bad_spec_makes_the_worker_exit_2_with_one_line(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", {**tiny_spec(), "seedz": 1})
    proc = run_module("bench", "worker", str(spec), "--out", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("bench worker: error: ") and "seedz" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_trials_and_the_sweep_reach_wandb_offline(tmp_path):
    from wandb_runs import find_run_files, read_run

    from bench.sweeps.launcher import run_sweep

    spec = tiny_spec(
        compare={"model.norm_placement": ["pre"]},
        tune={"params": {"train.lr": [3e-3]}, "trials": 1},
    )
    spec["base"]["tracking"] = {"mode": "offline"}
    out = tmp_path / "sweep"
    assert (
        run_sweep(
            write_spec(tmp_path / "s.yaml", spec), workers=1, devices="cpu", out=out, live=False
        )
        == 0
    )
    trials = [t for ts in trials_of(out).values() for t in ts]
    assert len(trials) == 2
    for t in trials:
        (path,) = find_run_files(Path(t.user_attrs["run_dir"]) / "wandb")
        run = read_run(path)
        assert run.group == "tiny" and run.job_type == t.user_attrs["phase"]
        assert run.config["meta.cell"] == "norm_placement=pre"
        assert run.config["meta.trial"] == t.number
        assert "norm_placement=pre" in run.tags
    (sweep_file,) = find_run_files(out / "wandb")
    sweep_run = read_run(sweep_file)
    assert sweep_run.job_type == "sweep" and sweep_run.group == "tiny"
    assert sweep_run.summary["n_trials"] == 2
    assert sweep_run.summary["trials"]["_type"] == "table-file"
    assert sweep_run.summary["best/norm_placement=pre"] == pytest.approx(trials[0].values[0])


def test_a_multi_objective_search_explores_architecture_and_hyperparameters_in_one_study(tmp_path):
    search = {
        "params": {
            "model.pos_encoding": ["learned", "rope"],
            "train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
        },
        "trials": 3,
        "sampler": "random",
    }
    objectives = [{"metric": "val/loss"}, {"metric": "val/acc", "direction": "maximize"}]
    spec = tiny_spec(
        compare=None, tune=None, search=search, objective=objectives, pruner=None, seeds=0
    )
    out = tmp_path / "sweep"
    assert run_worker(str(write_spec(tmp_path / "s.yaml", spec)), out=str(out), worker_id="0") == 0
    (trials,) = trials_of(out).values()
    assert len(trials) == 3 and all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert len(t.values) == 2 and t.values[1] == pytest.approx(
            t.user_attrs["metrics"]["val/acc"]
        )
        cfg = yaml.safe_load((Path(t.user_attrs["run_dir"]) / "config.yaml").read_text())
        assert cfg["model"]["pos_encoding"] == t.params["model.pos_encoding"]


def test_no_trial_starts_after_the_wall_clock_deadline(tmp_path):
    out = tmp_path / "sweep"
    spec = write_spec(tmp_path / "s.yaml", tiny_spec())
    assert run_worker(str(spec), out=str(out), worker_id="0", deadline=time.time() - 1) == 0
    # Only the enqueued tuning points are there, none of them started.
    assert all(t.state == TrialState.WAITING for ts in trials_of(out).values() for t in ts)


def test_the_total_trial_budget_caps_tuning_across_cells(tmp_path):
    out = tmp_path / "sweep"
    spec = write_spec(tmp_path / "s.yaml", tiny_spec(budget={"trials": 1}, seeds=0))
    assert run_worker(str(spec), out=str(out), worker_id="0") == 0
    started = [t for ts in trials_of(out).values() for t in ts if t.state != TrialState.WAITING]
    assert len(started) == 1

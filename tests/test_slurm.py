"""Sweeps on a real (one-node) Slurm cluster, with PostgreSQL storage.

The cluster is Debian's slurm-wlm + munge, started once for this module by
``tools/local-slurm.sh`` (``tests/slurm_cluster.py``; installed with apt when
missing) and always stopped. The tests run in one xdist group: one cluster.

- a sweep submitted with ``--launcher slurm`` gives the trials (and report rows)
  the local launcher gives;
- a worker preempted mid-trial, three ways (its pre-timeout signal, ``scontrol
  requeue``, ``scancel`` of the whole array then a resubmission), resumes the
  same trial from its checkpoint each time and ends with the metrics of an
  uninterrupted run; nothing lost or duplicated, counted through Optuna;
- bad launcher options: one line, exit 2, nothing submitted or written.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from slurm_cluster import local_slurm, squeue
from sweep_helpers import (
    assert_refused_in_one_line,
    env_for_tests,
    fresh_database,
    one_cell_spec,
    require_postgres,
    tiny_spec,
    wait_for,
    write_spec,
)

from bench.cli import main
from bench.config import build_run_config

pytestmark = [pytest.mark.xdist_group("slurm"), pytest.mark.slurm]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """The cluster's environment (SLURM_CONF=...), for subprocesses and this process."""
    import os

    with local_slurm(tmp_path_factory.mktemp("slurm")) as env:
        old = os.environ.get("SLURM_CONF")
        os.environ["SLURM_CONF"] = env["SLURM_CONF"]
        try:
            yield {**env_for_tests(), **env}
        finally:
            if old is None:
                os.environ.pop("SLURM_CONF", None)
            else:
                os.environ["SLURM_CONF"] = old


@pytest.fixture
def bench(capsys):
    """``bench ARGS`` in this process (what the console script runs): (exit code, stdout, stderr).

    In-process saves a Python start with torch per command; the workers Slurm
    starts are real processes on the cluster.
    """

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def job_id(stdout: str) -> str:
    first = stdout.strip().splitlines()[0]
    assert first.startswith("submitted Slurm job array "), stdout
    return first.split()[4]


def trials(url: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    storage = optuna.storages.RDBStorage(url)
    return {
        name: optuna.load_study(study_name=name, storage=storage).get_trials()
        for name in optuna.get_all_study_names(storage)
    }


def last_step(run_dir: Path) -> int:
    """The last step in a run's metrics.csv (0 before any)."""
    try:
        with open(run_dir / "metrics.csv") as f:
            steps = [int(float(r["step"])) for r in csv.DictReader(f) if r.get("step")]
    except (OSError, ValueError, KeyError):
        return 0
    return max(steps, default=0)


def done(job: str, env: dict[str, str]) -> bool:
    return not squeue(job, env)


# ----------------------------------------------------------------------------- same as local


def test_a_slurm_sweep_gives_the_trials_and_report_rows_of_the_local_launcher(
    tmp_path, slurm, bench
):
    require_postgres()
    from bench.report.collect import load_sweep

    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec(seeds=0))  # 2 cells x 2 trials
    code, _, err = bench("sweep", str(spec), "--out", str(tmp_path / "local"))
    assert code == 0, err
    with fresh_database() as url:
        t0 = time.time()
        code, out, err = bench(
            "sweep", str(spec), "--out", str(tmp_path / "slurm"), "--launcher", "slurm",
            "--workers", "2", "--storage", url,
        )  # fmt: skip
        assert code == 0, err
        job = job_id(out)
        wait_for(lambda: done(job, slurm), timeout=180, every=0.5)
        print(f"slurm sweep: {time.time() - t0:.1f} s from submission to the end")

        code, out, err = bench("status", str(tmp_path / "slurm"))
        assert code == 0, err
        assert "Slurm workers" in out and f"{job}_1" in out and "COMPLETED" in out

        def rows(data) -> list[tuple]:
            return sorted(
                (
                    r["phase"], r["cell"], str(r["seed"]), r["status"], r["train.lr"],
                    r["value"], r["steps"], r["metrics"].get("val/acc"),
                )
                for r in data.rows
            )  # fmt: skip

        ours, theirs = load_sweep(tmp_path / "slurm", url), load_sweep(tmp_path / "local")
        assert len(ours.rows) == 4
        assert rows(ours) == rows(theirs)


# ----------------------------------------------------------------------------- DDP workers


def test_a_worker_of_two_slurm_tasks_trains_each_trial_once_as_one_ddp_run_of_world_size_2(
    tmp_path, slurm, bench
):
    """``--tasks-per-node 2``: one Slurm job of 2 tasks (CPU, gloo) per worker. Task 0
    claims each trial, both train it under Lightning's SLURMEnvironment (the same path as
    2 nodes x 1 task: world size from SLURM_NTASKS, rank from SLURM_PROCID)."""
    require_postgres()
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec(seeds=0))  # 2 cells x 2 trials
    out = tmp_path / "sweep"
    with fresh_database() as url:
        t0 = time.time()
        code, said, err = bench(
            "sweep", str(spec), "--out", str(out), "--launcher", "slurm", "--workers", "1",
            "--tasks-per-node", "2", "--storage", url,
        )  # fmt: skip
        assert code == 0, err
        job = job_id(said)
        first = out / "runs" / "tune-norm_placement=pre-t0000"
        wait_for(lambda: done(job, slurm) or last_step(first) > 0, timeout=240, every=0.2)
        print(f"submission to the first DDP trial step: {time.time() - t0:.1f} s")
        wait_for(lambda: done(job, slurm), timeout=300, every=0.5)
        log = "".join(p.read_text() for p in (out / "slurm").glob("*_log.out"))

        studies = trials(url)
        assert sorted(studies) == ["tiny/tune/norm_placement=post", "tiny/tune/norm_placement=pre"]
        for name, tune in studies.items():
            # Each trial once, COMPLETE: nothing asked twice by the two tasks, nothing failed.
            assert [(t.number, t.state) for t in tune] == [
                (0, TrialState.COMPLETE),
                (1, TrialState.COMPLETE),
            ], (name, [t.user_attrs.get("reason") for t in tune], log[-3000:])
            for t in tune:
                run_dir = Path(t.user_attrs["run_dir"])
                summary = json.loads((run_dir / "summary.json").read_text())
                assert summary["world_size"] == 2, summary
                config = build_run_config(run_dir / "config.yaml")
                assert (config.train.nodes, config.train.devices) == (1, 2)
                assert all(math.isfinite(v) for v in t.user_attrs["metrics"].values())
                assert math.isfinite(t.value)
        # Rank 1 kept no records of its own: rank 0 wrote every file of the run.
        assert not list(out.glob("runs/*/ddp-rank*"))


@pytest.mark.slow  # a 200-step DDP trial, signalled and requeued: about a minute
def test_a_ddp_worker_warned_of_its_time_limit_checkpoints_on_both_ranks_and_resumes(
    tmp_path, slurm, bench
):
    """Slurm's pre-timeout signal reaches both tasks: both ranks stop at one step, task 0
    holds the trial and requeues the job, whose two tasks resume it from the checkpoint."""
    require_postgres()
    spec = one_cell_spec(1, max_steps=200, val_every=40, log_every=4)
    path = write_spec(tmp_path / "long.yaml", spec)
    out = tmp_path / "sweep"
    run0 = out / "runs" / "tune-norm_placement=pre-t0000"
    with fresh_database() as url:
        code, said, err = bench(
            "sweep", str(path), "--out", str(out), "--launcher", "slurm", "--storage", url,
            "--tasks-per-node", "2",
        )  # fmt: skip
        assert code == 0, err
        job = job_id(said)
        at = wait_for(lambda: (s := last_step(run0)) >= 40 and s, timeout=300, every=0.1)
        subprocess.run(["scancel", "--signal=USR2", job], env=slurm, check=True, timeout=30)
        wait_for(lambda: last_step(run0) >= 200 or done(job, slurm), timeout=300, every=0.5)
        wait_for(lambda: done(job, slurm), timeout=300, every=0.5)
        log = "".join(p.read_text() for p in (out / "slurm").glob("*_log.out"))

        (tune,) = trials(url).values()
        assert [(t.number, t.state) for t in tune] == [(0, TrialState.COMPLETE)], log[-3000:]
        (trial,) = tune
        assert trial.system_attrs["preemptions"] == 1
        assert at <= trial.user_attrs["resumed_from_step"] < 200
        summary = json.loads((run0 / "summary.json").read_text())
        assert (summary["world_size"], summary["steps"]) == (2, 200)
        assert all(math.isfinite(v) for v in trial.user_attrs["metrics"].values())


# ----------------------------------------------------------------------------- preemption


@pytest.mark.slow  # three preemptions and an uninterrupted twin: over a minute
def test_a_trial_preempted_three_ways_resumes_each_time_and_ends_as_if_uninterrupted(
    tmp_path, slurm, bench
):
    """Pre-timeout signal (the worker requeues itself), ``scontrol requeue``, then
    ``scancel`` of the whole array and a resubmission: the same trial number goes on
    from its checkpoint each time; its final metrics equal an uninterrupted run's."""
    require_postgres()
    from bench.config import build_run_config
    from bench.training.run import train_run

    spec = one_cell_spec(2, max_steps=240, val_every=40, log_every=4)
    path = write_spec(tmp_path / "long.yaml", spec)
    out = tmp_path / "sweep"
    run0 = out / "runs" / "tune-norm_placement=pre-t0000"
    with fresh_database() as url:
        t0 = time.time()
        code, said, err = bench(
            "sweep", str(path), "--out", str(out), "--launcher", "slurm", "--storage", url,
        )  # fmt: skip
        assert code == 0, err
        job = job_id(said)
        task = job  # a single worker is a plain job (a one-task array for submitit)
        wait_for(lambda: last_step(run0) > 0, timeout=300, every=0.1)
        print(f"submission to the first trial step: {time.time() - t0:.1f} s")

        stops = []
        for how in (["scancel", "--signal=USR2", task], ["scontrol", "requeue", task]):
            at = wait_for(lambda: (s := last_step(run0)) >= 40 * (len(stops) + 1) and s, 120, 0.1)
            subprocess.run(how, env=slurm, check=True, timeout=30)
            stops.append(at)  # the requeued worker starts again by itself (~6 s here)
        at = wait_for(lambda: (s := last_step(run0)) >= 130 and s, 120, 0.1)
        code, said, err = bench("sweep", str(out), "--launcher", "slurm", "--cancel")
        assert code == 0 and said.startswith(f"cancelled Slurm job array {job}"), err
        wait_for(lambda: done(job, slurm), timeout=60, every=0.2)
        stops.append(at)
        held = trials(url)["tiny/tune/norm_placement=pre"][0]
        assert held.state == TrialState.WAITING and held.user_attrs["status"] == "preempted"

        code, said, err = bench("sweep", str(out), "--launcher", "slurm", "--storage", url)
        assert code == 0, err
        wait_for(lambda: done(job_id(said), slurm), timeout=180, every=0.5)

        studies = trials(url)
        (tune,) = studies.values()
        # Nothing lost, nothing duplicated: two trials, numbers 0 and 1, both complete once.
        assert [(t.number, t.state) for t in tune] == [
            (0, TrialState.COMPLETE),
            (1, TrialState.COMPLETE),
        ]
        first = tune[0]
        assert first.system_attrs["preemptions"] == 3
        assert "failed_trial" not in first.system_attrs
        resumed = first.user_attrs["resumed_from_step"]
        assert stops[-1] <= resumed < 240, (stops, resumed)
        assert first.user_attrs["run_dir"] == str(run0)
        assert (run0 / "summary.json").is_file()
        # The requeued worker continued from the checkpoint: no step was trained twice
        # in what the run reports, and it ends where an uninterrupted run ends.
        cfg = build_run_config(run0 / "config.yaml")
        cfg.tracking.run_dir = str(tmp_path / "uninterrupted")
        cfg.tracking.mode = "disabled"
        clean = train_run(cfg)
        got = first.user_attrs["metrics"]
        for key in ("val/loss", "val/acc", "best/val/loss", "train/loss"):
            assert math.isclose(got[key], clean.metrics[key], rel_tol=0, abs_tol=0), key
        print(f"preempted at steps {stops}; final val/loss {got['val/loss']!r} vs uninterrupted "
              f"{clean.metrics['val/loss']!r}")  # fmt: skip


# ----------------------------------------------------------------------------- bench train


def train_args(out: Path, *extra: str) -> str:
    """A tiny ``bench train`` of 200 steps (validation every 40) writing under ``out``."""
    return " ".join([
        "task.name=copy", "task.seq_len=6", "task.n_symbols=8", "task.n_train=128",
        "task.n_val=32", "task.eval_scales=[1]", "task.batch_size=16", "model.d_model=16",
        "model.n_layers=1", "model.n_heads=2", "model.max_len=32", "train.max_steps=200",
        "train.val_every=40", "train.log_every=4", "train.warmup_steps=2", "train.threads=1",
        "tracking.mode=disabled", f"tracking.out_dir={out}", "tracking.name=t",
        "diagnostics.gradients=false", "diagnostics.noise_scale=false",
        "diagnostics.attention_entropy=false", "diagnostics.throughput=false", *extra,
    ])  # fmt: skip


def sbatch(tmp_path: Path, body: str, env: dict[str, str]) -> str:
    """Submit a batch script (its output appended to ``job-<id>.out``); its job id."""
    script = tmp_path / "train.sh"
    script.write_text(
        "#!/bin/bash\n#SBATCH --signal=B:USR1@60\n"
        f"#SBATCH --output={tmp_path}/job-%j.out\n#SBATCH --open-mode=append\n"
        f"cd {tmp_path}\n{body}"
    )
    return subprocess.run(
        ["sbatch", "--parsable", str(script)], env=env, capture_output=True, text=True,
        check=True, timeout=30,
    ).stdout.strip()  # fmt: skip


@pytest.mark.slow  # a batch job signalled and requeued: about 45 s
def test_bench_train_in_an_sbatch_script_warned_of_its_time_limit_requeues_and_resumes_its_run(
    tmp_path, slurm
):
    """A batch script of two ``bench train`` commands, the second ``exec``: the pre-timeout
    signal checkpoints the second's run, the job requeues itself, and the requeued job
    (the same script) skips the finished first run and resumes the second, which ends
    with the metrics of an uninterrupted run."""
    import sys

    from bench.config import build_run_config
    from bench.training.run import train_run

    out, py = tmp_path / "runs", sys.executable
    body = (
        f"{py} -m bench train {train_args(out, 'train.max_steps=8', 'tracking.name=first')}\n"
        f"exec {py} -m bench train {train_args(out)}\n"
    )
    job = sbatch(tmp_path, body, slurm)
    run_dir = wait_for(lambda: next(out.glob("t-*"), None), timeout=300, every=0.1)
    at = wait_for(lambda: (s := last_step(run_dir)) >= 40 and s, timeout=300, every=0.1)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=slurm, check=True, timeout=30)
    wait_for(lambda: done(job, slurm) and (run_dir / "summary.json").is_file(), 300, 0.5)
    said = "".join(p.read_text() for p in sorted(tmp_path.glob("job-*.out")))

    assert "preempted by SIGUSR1 at step" in said and f"requeued Slurm job {job}" in said, said
    assert f"Slurm job {job} was requeued: resuming {run_dir}" in said, said
    (first,) = out.glob("first-*")
    assert f"Slurm job {job} was requeued: {first} had already finished" in said, said
    assert sorted(p.name for p in out.iterdir()) == [".slurm-jobs", first.name, run_dir.name]
    stopped = int(said.split("preempted by SIGUSR1 at step ")[1].split(":")[0])
    assert at <= stopped < 200
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 200
    cfg = build_run_config(run_dir / "config.yaml")
    cfg.tracking.run_dir = str(tmp_path / "uninterrupted")
    clean = train_run(cfg)
    for key in ("val/loss", "val/acc", "best/val/loss", "train/loss"):
        assert math.isclose(summary["metrics"][key], clean.metrics[key], rel_tol=0, abs_tol=0), key


def test_bench_train_in_a_cancelled_batch_job_checkpoints_and_says_how_to_resume(
    tmp_path, slurm, bench
):
    """``scancel``: SIGTERM to the batch step. The run checkpoints at its next step, the
    command prints one line with ``bench train --resume RUN`` and exits 75; that command
    finishes the run."""
    import sys

    out = tmp_path / "runs"
    job = sbatch(tmp_path, f"exec {sys.executable} -m bench train {train_args(out)}\n", slurm)
    run_dir = wait_for(lambda: next(out.glob("t-*"), None), timeout=300, every=0.1)
    wait_for(lambda: last_step(run_dir) >= 40, timeout=300, every=0.1)
    subprocess.run(["scancel", job], env=slurm, check=True, timeout=30)
    wait_for(lambda: done(job, slurm), timeout=120, every=0.2)
    said = (tmp_path / f"job-{job}.out").read_text()

    line = next(ln for ln in said.splitlines() if ln.startswith("preempted by SIGTERM at step"))
    assert line.endswith(f": checkpointed {run_dir}; resume with: bench train --resume {run_dir}")
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not (run_dir / "summary.json").exists()
    code, _, err = bench("train", "--resume", str(run_dir))
    assert code == 0, err
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 200


# ----------------------------------------------------------------------------- bad options


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--partition", "nosuch"], ["--partition=nosuch", "Slurm refuses", "partitions here"]),
        (["--gpus-per-worker", "0"], ["--gpus-per-worker=0", "greater than or equal to 1"]),
        (["--time", "soon"], ["--time='soon'", "HH:MM:SS"]),
        (["--sbatch", "constraint a100"], ["--sbatch='constraint a100'", "--name=value"]),
        (["--storage", "JOURNAL"], ["journal on a local filesystem", "PostgreSQL"]),
        (["--storage", "sqlite:///x.db"], ["SQLite", "shared filesystem"]),
    ],
)
def test_a_bad_launcher_option_is_one_line_and_exit_2_before_anything_is_submitted(
    tmp_path, slurm, capsys, monkeypatch, args, words
):
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec())
    monkeypatch.chdir(tmp_path)
    if "--storage" not in args:  # a good storage, so that the option itself is what is wrong
        require_postgres()
        args = [*args, "--storage", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"]
    args = [str(tmp_path / "journal.log") if a == "JOURNAL" else a for a in args]
    before = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout
    code = main(["sweep", str(spec), "--out", "sweep", "--launcher", "slurm", *args])
    assert_refused_in_one_line(code, capsys.readouterr().err.strip(), words, tmp_path)
    assert subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout == before


def test_the_specs_launcher_section_chooses_slurm_and_its_keys_are_checked_the_same_way(
    tmp_path, slurm, capsys
):
    require_postgres()
    spec = tiny_spec(launcher={"name": "slurm", "partition": "nosuch", "workers": 2})
    path = write_spec(tmp_path / "tiny.yaml", spec)
    url = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    code = main(["sweep", str(path), "--out", str(tmp_path / "s"), "--storage", url])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--partition=nosuch" in err and "Slurm refuses" in err, err
    bad = write_spec(tmp_path / "bad.yaml", tiny_spec(launcher={"name": "slurm", "mem": "lots"}))
    code = main(["sweep", str(bad), "--out", str(tmp_path / "s"), "--storage", url])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "launcher.mem='lots'" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "s").exists()


def test_a_slurm_option_without_the_slurm_launcher_is_refused(tmp_path, capsys):
    spec = write_spec(tmp_path / "tiny.yaml", tiny_spec())
    code = main(["sweep", str(spec), "--out", str(tmp_path / "s"), "--partition", "gpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--partition: a Slurm option" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s").exists()


# ----------------------------------------------------------------------------- GPU placement


def test_gpus_per_worker_become_gres_and_a_ddp_trial_must_fit_in_one_workers_gpus(tmp_path):
    """No GPU here: the placement logic is checked on its inputs and outputs."""
    import submitit

    from bench.config import ConfigError
    from bench.sweeps.slurm.checks import check_devices
    from bench.sweeps.slurm.options import executor_parameters, sbatch_options, worker_gpus
    from bench.sweeps.spec import LauncherSpec, parse_spec
    from bench.training.cluster import cluster_plugins

    opts = LauncherSpec(name="slurm", gpus_per_worker=2, cpus_per_worker=8, time="1-00:00:00")
    assert "--gres=gpu:2" in sbatch_options(opts)
    executor = submitit.SlurmExecutor(folder=tmp_path)
    executor.update_parameters(**executor_parameters(opts, "bench-x"))
    script = executor._make_submission_file_text("python -m x", "uid")
    for line in ("--gres=gpu:2", "--cpus-per-task=8", "--ntasks-per-node=1", "--time=1440"):
        assert f"#SBATCH {line}" in script, script

    # Slurm sets CUDA_VISIBLE_DEVICES to the allocated GPUs (renumbered from 0 under cgroups).
    assert worker_gpus({"CUDA_VISIBLE_DEVICES": "0,1"}) == ["0", "1"]
    assert worker_gpus({"CUDA_VISIBLE_DEVICES": "2,5"}) == ["2", "5"]
    assert worker_gpus({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}) == []
    assert worker_gpus({}) == []

    # A DDP trial (train.devices=2) fits in 2 GPUs per worker, not in 1.
    spec = parse_spec({**tiny_spec(), "base": {**tiny_spec()["base"], "train": {"devices": 2}}})
    check_devices(spec, opts)
    with pytest.raises(ConfigError, match=r"--gpus-per-worker=1: a trial needs train.devices=2"):
        check_devices(spec, LauncherSpec(name="slurm", gpus_per_worker=1))
    # Inside the one-task Slurm job Lightning starts the DDP ranks itself.
    in_task = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "bench-x"}
    assert [type(p).__name__ for p in cluster_plugins(2, 1, in_task)] == ["LightningEnvironment"]
    assert cluster_plugins(1, 1, in_task) == [] and cluster_plugins(2, 1, {}) == []

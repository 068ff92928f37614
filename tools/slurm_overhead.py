"""What the Slurm launcher costs against the local one, on the same spec, measured in one run.

    .venv/bin/python tools/slurm_overhead.py [--trials N]

Runs one tiny compare sweep twice with one worker and PostgreSQL storage: with
the local launcher, then with ``--launcher slurm`` on a one-node cluster (the
one ``SLURM_CONF`` names, else one started by ``tools/local-slurm.sh`` in a
temporary directory and stopped afterwards). From the commands' clocks and the
trials' start/complete times in the storage it prints:

- time from the command to the first trial running (Slurm: also to submission
  returning and to the array task running);
- per trial: mean duration, mean gap between one trial's end and the next
  one's start on the worker, and their sum against the local launcher's;
- wall time of the whole sweep.

The machine's load average is printed too: on a shared machine absolute times
move with it, the local/Slurm ratio much less.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from statistics import mean

import optuna
import psycopg2
import yaml

ROOT = Path(__file__).resolve().parent.parent
PG = dict(host="127.0.0.1", port=5432, user="postgres")


def spec(trials: int) -> dict:
    return {
        "name": "overhead",
        "base": {
            "task": {"name": "copy", "seq_len": 6, "n_symbols": 8, "n_train": 128, "n_val": 32,
                     "eval_scales": [1], "batch_size": 16},
            "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_len": 32},
            "train": {"max_steps": 20, "val_every": 10, "warmup_steps": 2, "log_every": 5,
                      "threads": 1},
            "tracking": {"mode": "disabled"},
            "diagnostics": {"gradients": False, "noise_scale": False,
                            "attention_entropy": False, "throughput": False},
        },
        "compare": {"model.norm_placement": ["pre", "post"]},
        "tune": {"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
                 "trials": trials},
        "seeds": 0,
        "pruner": "none",
    }  # fmt: skip


def database() -> str:
    name = f"bench_overhead_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(dbname="postgres", **PG)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{name}"


def trial_times(url: str) -> list[tuple[float, float]]:
    """(start, complete) epoch seconds of every finished trial, by start."""
    storage = optuna.storages.RDBStorage(url)
    out = []
    for name in optuna.get_all_study_names(storage):
        for t in optuna.load_study(study_name=name, storage=storage).get_trials():
            if t.datetime_start and t.datetime_complete:
                out.append((t.datetime_start.timestamp(), t.datetime_complete.timestamp()))
    return sorted(out)


def first_start(url: str) -> float | None:
    try:
        storage = optuna.storages.RDBStorage(url)
        starts = [
            t.datetime_start.timestamp()
            for name in optuna.get_all_study_names(storage)
            for t in optuna.load_study(study_name=name, storage=storage).get_trials()
            if t.datetime_start
        ]
    except Exception:
        return None
    return min(starts) if starts else None


def per_trial(times: list[tuple[float, float]]) -> tuple[float, float]:
    durations = [c - s for s, c in times]
    gaps = [b[0] - a[1] for a, b in pairwise(times)]
    return mean(durations), mean(gaps) if gaps else 0.0


def bench(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bench", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_local(path: Path, work: Path, env: dict) -> dict:
    url = database()
    t0 = time.time()
    proc = bench("sweep", str(path), "--out", str(work / "local"), "--workers", "1",
                 "--storage", url, env=env)  # fmt: skip
    first = None
    while proc.poll() is None:
        first = first or first_start(url)
        time.sleep(0.2)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    end = time.time()
    return {"first": (first or end) - t0, "wall": end - t0, "times": trial_times(url)}


def run_slurm(path: Path, work: Path, env: dict) -> dict:
    url = database()
    t0 = time.time()
    proc = bench("sweep", str(path), "--out", str(work / "slurm"), "--launcher", "slurm",
                 "--storage", url, env=env)  # fmt: skip
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    submitted = time.time()
    job = out.split()[4]
    running = first = None
    while True:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env,
                               capture_output=True, text=True).stdout.split()  # fmt: skip
        now = time.time()
        if running is None and "RUNNING" in state:
            running = now
        first = first or first_start(url)
        if not state:
            break
        time.sleep(0.2)
    end = time.time()
    return {
        "submitted": submitted - t0,
        "running": (running or end) - t0,
        "first": (first or end) - t0,
        "wall": end - t0,
        "times": trial_times(url),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=3, help="tuning trials per cell (2 cells)")
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    with tempfile.TemporaryDirectory(prefix="bench-slurm-overhead-") as tmp:
        work = Path(tmp)
        path = work / "overhead.yaml"
        path.write_text(yaml.safe_dump(spec(args.trials), sort_keys=False))
        started_cluster = "SLURM_CONF" not in env
        if started_cluster:
            subprocess.run([str(ROOT / "tools/local-slurm.sh"), "start", str(work / "slurm-cluster")],
                           check=True, env=env)  # fmt: skip
            env["SLURM_CONF"] = str(work / "slurm-cluster" / "slurm.conf")
        try:
            load0 = os.getloadavg()[0]
            local = run_local(path, work, env)
            slurm = run_slurm(path, work, env)
            load1 = os.getloadavg()[0]
        finally:
            if started_cluster:
                subprocess.run([str(ROOT / "tools/local-slurm.sh"), "stop", str(work / "slurm-cluster")],
                               env=env, capture_output=True)  # fmt: skip
    n = len(local["times"])
    assert n == len(slurm["times"]) == 2 * args.trials, (n, len(slurm["times"]))
    ld, lg = per_trial(local["times"])
    sd, sg = per_trial(slurm["times"])
    print(f"{datetime.now():%Y-%m-%d %H:%M}  {n} trials, 1 worker, PostgreSQL; "
          f"load average {load0:.1f} -> {load1:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"local : command -> first trial running {local['first']:6.1f} s; "
          f"sweep wall {local['wall']:6.1f} s")  # fmt: skip
    print(f"slurm : command -> submitted {slurm['submitted']:6.1f} s -> task running "
          f"{slurm['running']:6.1f} s -> first trial running {slurm['first']:6.1f} s; "
          f"sweep wall {slurm['wall']:6.1f} s")  # fmt: skip
    print(f"per trial: local {ld:.2f} s + {lg:.2f} s gap; slurm {sd:.2f} s + {sg:.2f} s gap; "
          f"slurm/local = {(sd + sg) / (ld + lg):.2f}")  # fmt: skip
    print(
        f"fixed start-up: slurm - local = {slurm['first'] - local['first']:+.1f} s to the first trial"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

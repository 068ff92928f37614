"""A DDP worker of 2 Slurm tasks against a 1-task worker, on the same spec, measured in one run.

    .venv/bin/python tools/slurm_ddp.py [--trials N] [--steps S] [--tasks-per-node M]

Runs one one-cell sweep twice with ``--launcher slurm``, one worker and PostgreSQL
storage: a worker of one task, then a worker of ``--tasks-per-node`` tasks (each
trial one DDP run over all of them: CPU, gloo). The cluster is the one
``SLURM_CONF`` names, else a one-node cluster started by ``tools/local-slurm.sh``
in a temporary directory (under the tests' cluster lock) and stopped afterwards.
For each it prints the time from the command to the first trial running (in the
storage) and to its first training step (in ``metrics.csv``), and per trial the
mean Optuna duration and ``summary.json`` ``wall_time`` (the fit), with the DDP /
1-task ratios. A DDP trial here trains ``M`` x the examples a step (each rank its
own batch) on ``M`` CPUs; on a shared 2-core machine the load average (printed)
moves every absolute number.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from statistics import mean

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from slurm_overhead import ROOT, bench, database, first_start, trial_times
from slurm_overhead import spec as overhead_spec

LOCK = Path(tempfile.gettempdir()) / "bench-local-slurm.lock"  # tests/slurm_cluster.py's


def spec(trials: int, steps: int) -> dict:
    s = overhead_spec(trials)
    s["name"] = "ddp"
    s["compare"] = {"model.norm_placement": ["pre"]}
    s["base"]["train"].update(max_steps=steps, val_every=steps // 2, log_every=10)
    return s


def first_step(sweep: Path) -> bool:
    """A trial has logged a training step (a row below metrics.csv's header)."""
    for p in sweep.glob("runs/*/metrics.csv"):
        with open(p) as f:
            if len(f.readlines()) > 1:
                return True
    return False


def run(path: Path, out: Path, env: dict, tasks: int) -> dict:
    url = database()
    t0 = time.time()
    proc = bench("sweep", str(path), "--out", str(out), "--launcher", "slurm",
                 "--tasks-per-node", str(tasks), "--storage", url, env=env)  # fmt: skip
    said, err = proc.communicate()
    assert proc.returncode == 0, err
    job = said.split()[4]
    first = stepped = None
    while True:
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env,
                               capture_output=True, text=True).stdout.split()  # fmt: skip
        first = first or first_start(url)
        stepped = stepped or (time.time() if first_step(out) else None)
        if not state:
            break
        time.sleep(0.2)
    end = time.time()
    walls, sizes = [], set()
    for summary in out.glob("runs/*/summary.json"):
        data = json.loads(summary.read_text())
        walls.append(data["wall_time"])
        sizes.add(data["world_size"])
    times = trial_times(url)
    return {
        "first": (first or end) - t0,
        "step": (stepped or end) - t0,
        "trial": mean(c - s for s, c in times),
        "fit": mean(walls),
        "n": len(times),
        "world": sorted(sizes),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=2, help="tuning trials (one cell)")
    p.add_argument("--steps", type=int, default=200, help="training steps a trial")
    p.add_argument("--tasks-per-node", type=int, default=2, help="tasks of the DDP worker")
    args = p.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    with tempfile.TemporaryDirectory(prefix="bench-slurm-ddp-") as tmp, LOCK.open("w") as lock:
        work = Path(tmp)
        path = work / "ddp.yaml"
        path.write_text(yaml.safe_dump(spec(args.trials, args.steps), sort_keys=False))
        started_cluster = "SLURM_CONF" not in env
        script, cluster = str(ROOT / "tools/local-slurm.sh"), str(work / "slurm-cluster")
        if started_cluster:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one cluster on this machine at a time
            subprocess.run([script, "start", cluster], check=True, env=env, capture_output=True)
            env["SLURM_CONF"] = str(work / "slurm-cluster" / "slurm.conf")
        try:
            load0 = os.getloadavg()
            one = run(path, work / "one", env, 1)
            ddp = run(path, work / "ddp", env, args.tasks_per_node)
            load1 = os.getloadavg()
        finally:
            if started_cluster:
                subprocess.run([script, "stop", cluster], env=env, capture_output=True)
    assert one["n"] == ddp["n"] == args.trials, (one["n"], ddp["n"])
    print(f"{datetime.now():%Y-%m-%d %H:%M}  {args.trials} trials x {args.steps} steps, 1 worker, "
          f"PostgreSQL, {os.cpu_count()} CPUs; load average (1/5/15 min) "
          f"{'/'.join(f'{x:.1f}' for x in load0)} -> {'/'.join(f'{x:.1f}' for x in load1)}")  # fmt: skip
    for name, r in (("1 task ", one), (f"{args.tasks_per_node} tasks", ddp)):
        print(f"{name}: world size {r['world']}; command -> first trial running {r['first']:5.1f} s"
              f" -> first step {r['step']:5.1f} s; per trial {r['trial']:5.2f} s "
              f"(fit {r['fit']:5.2f} s)")  # fmt: skip
    print(f"DDP / 1 task: per trial {ddp['trial'] / one['trial']:.2f}, fit "
          f"{ddp['fit'] / one['fit']:.2f}, to the first step {ddp['step'] / one['step']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

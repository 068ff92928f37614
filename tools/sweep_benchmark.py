"""Performance figures of the sweep machinery (functions to run by hand, not timed tests).

- :func:`benchmark_orchestration`: per-trial overhead = the trial's time in the study
  (ask -> tell) minus its own training time (``summary.json`` ``wall_time``), plus
  the amortized worker start-up; with W&B offline or disabled.
- :func:`benchmark_scaling`: trials per minute with 1 and with N workers on tiny
  single-threaded trials (the ratio should approach N on N free cores).

- :func:`benchmark_quickstart`: the whole ``bench sweep sweeps/quickstart.yaml`` command
  (a real subprocess: start-up, every trial, the end) with 1 and with N workers, and
  the machine's load average around each (other work on the machine makes the ratio
  meaningless).

``python tools/sweep_benchmark.py`` prints the first two; ``--quickstart`` the third.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.sweeps.launcher import run_sweep
from bench.sweeps.layout import open_sweep_dir
from bench.sweeps.progress.wandb_run import trial_rows


def tiny_search_spec(
    name: str, trials: int, steps: int = 30, wandb: str = "disabled"
) -> dict[str, Any]:
    """A one-cell LR search on a tiny copy task: about a second of training per trial."""
    return {
        "name": name,
        "base": {
            "task": {
                "name": "copy",
                "seq_len": 6,
                "n_symbols": 8,
                "n_train": 256,
                "n_val": 32,
                "eval_scales": [1],
                "batch_size": 16,
            },
            "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_len": 32},
            "train": {
                "max_steps": steps,
                "val_every": steps,
                "warmup_steps": 2,
                "log_every": 10,
                "threads": 1,
            },
            "tracking": {"mode": wandb},
            "diagnostics": {
                "gradients": False,
                "noise_scale": False,
                "attention_entropy": False,
                "throughput": False,
            },
        },
        "compare": {"model.norm_placement": ["pre"]},
        "tune": {
            "params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}},
            "trials": trials,
            "sampler": "random",
        },
        "pruner": "none",
    }


def _run(spec: dict[str, Any], workers: int, root: Path) -> tuple[float, Path]:
    path = root / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = root / spec["name"]
    start = time.perf_counter()
    code = run_sweep(path, workers=workers, devices="cpu", out=out, live=False)
    if code != 0:
        raise RuntimeError(f"benchmark sweep exited with {code}")
    return time.perf_counter() - start, out


def benchmark_orchestration(
    trials: int = 8, wandb: str = "offline", root: str | Path | None = None
) -> dict[str, float]:
    """Seconds of orchestration per trial, against the trial's own training time."""
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        wall, out = _run(tiny_search_spec(f"orch-{wandb}", trials, wandb=wandb), 1, Path(tmp))
        rows = [r for r in trial_rows(open_sweep_dir(out)) if r["state"] == "COMPLETE"]
        train = [
            json.loads((Path(r["run_dir"]) / "summary.json").read_text())["wall_time"] for r in rows
        ]
        in_study = [r["duration_s"] for r in rows]
    overhead = [s - t for s, t in zip(in_study, train, strict=True)]
    return {
        "trials": float(len(rows)),
        "train_s_per_trial": statistics.mean(train),
        "overhead_s_per_trial": statistics.mean(overhead),  # storage, config, data, W&B, Trainer
        "overhead_s_max": max(overhead),
        "sweep_s_per_trial": wall / len(rows),  # + process start-up and polling, amortized
        "amortized_overhead_s_per_trial": wall / len(rows) - statistics.mean(train),
    }


def _finished_trials(out: Path) -> list[Any]:
    """Every trial of a sweep's studies that started and finished."""
    import optuna

    storage = open_sweep_dir(out).open_storage()
    return [
        t
        for name in optuna.get_all_study_names(storage)
        for t in optuna.load_study(study_name=name, storage=storage).get_trials()
        if t.datetime_start and t.datetime_complete
    ]


def _steady_rate(out: Path) -> float:
    """Trials per minute from the first trial's start to the last one's end (no start-up)."""
    trials = _finished_trials(out)
    span = max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
    return 60 * len(trials) / span.total_seconds()


def timeline(out: Path, started: float, ended: float, workers: int) -> dict[str, float]:
    """Where a sweep command's wall time went, from its study's trial times.

    ``before_s``: command start to the first trial's start (process start, pre-flight,
    studies, worker start); ``after_s``: the last trial's end to the command's exit;
    ``trial_s``: mean seconds a trial took, ask to tell, and ``fit_s`` the mean
    ``summary.json`` ``wall_time`` (training, validation, diagnostics); ``idle_s``:
    worker-seconds inside the trial span in which a worker ran no trial (waiting for
    a phase, or the tail), i.e. ``workers x span - sum of trial seconds``.
    """
    from datetime import datetime

    trials = _finished_trials(out)
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in trials)
    busy = [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials]
    fits = []
    for t in trials:
        summary = Path(str(t.user_attrs.get("run_dir", ""))) / "summary.json"
        if summary.is_file():
            fits.append(float(json.loads(summary.read_text())["wall_time"]))
    span = (last - first).total_seconds()
    return {
        "trials": float(len(trials)),
        "before_s": (first - datetime.fromtimestamp(started)).total_seconds(),
        "after_s": (datetime.fromtimestamp(ended) - last).total_seconds(),
        "trial_s": statistics.mean(busy),
        "fit_s": statistics.mean(fits) if fits else math.nan,
        "idle_s": workers * span - sum(busy),
    }


def benchmark_scaling(
    trials: int = 12, workers: int = 2, steps: int = 60, root: str | Path | None = None
) -> dict[str, float]:
    """Trials per minute with 1 worker and with ``workers`` workers (1 thread each).

    ``trials_per_min_N`` counts the whole command (worker start-up included);
    ``steady_per_min_N`` only the span in which trials ran.
    """
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        for n in (1, workers):
            wall, sweep_dir = _run(tiny_search_spec(f"scale-{n}", trials, steps), n, Path(tmp))
            out[f"trials_per_min_{n}"] = 60 * trials / wall
            out[f"steady_per_min_{n}"] = _steady_rate(sweep_dir)
    out["speedup"] = out[f"trials_per_min_{workers}"] / out["trials_per_min_1"]
    out["steady_speedup"] = out[f"steady_per_min_{workers}"] / out["steady_per_min_1"]
    return out


QUICKSTART = Path(__file__).resolve().parents[1] / "sweeps" / "quickstart.yaml"


def benchmark_quickstart(workers: int = 2, root: str | Path | None = None) -> dict[str, float]:
    """Seconds of the whole quickstart command with 1 and ``workers`` workers, and the ratio.

    ``load_N``: the 1-minute load average when the N-worker command ended (its own
    workers included: about N on an otherwise idle machine); the other ``*_N`` keys
    are the command's :func:`timeline`.
    """
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        for n in (1, workers):
            cmd = [sys.executable, "-m", "bench", "sweep", str(QUICKSTART), "--workers", str(n)]
            cmd += ["--out", str(Path(tmp) / f"quickstart-{n}")]
            start, started = time.perf_counter(), time.time()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            out[f"seconds_{n}"] = time.perf_counter() - start
            out[f"load_{n}"] = os.getloadavg()[0]
            parts = timeline(Path(tmp) / f"quickstart-{n}", started, time.time(), n)
            out.update({f"{k}_{n}": v for k, v in parts.items()})
    out["speedup"] = out["seconds_1"] / out[f"seconds_{workers}"]
    return out


if __name__ == "__main__":
    from bench.sweeps.storage import quiet_optuna

    quiet_optuna()
    if "--quickstart" in sys.argv[1:]:
        print(f"load before: {os.getloadavg()[0]:.2f}")
        print("quickstart:", benchmark_quickstart())
        sys.exit(0)
    print("orchestration (W&B offline): ", benchmark_orchestration(wandb="offline"))
    print("orchestration (W&B disabled):", benchmark_orchestration(wandb="disabled"))
    print("scaling:", benchmark_scaling())

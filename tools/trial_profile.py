"""Where a quickstart trial's wall time goes: a breakdown printed, measured in one run.

Runs the first ``--trials`` trials of the quickstart sweep (``sweeps/quickstart.yaml``,
W&B offline as the spec says, one torch thread as a 2-worker sweep on 2 cores gives
each worker) through the real worker (:class:`bench.sweeps.worker.Worker`: claim,
``objective.execute``, ``train_run``, tell) in this process, with timers wrapped
around the real functions. Time is attributed to the innermost timed phase
(exclusive), so the phases add up to the trial's wall time:

- ``orchestration``: claiming the trial (storage reads, ``study.ask``), its config and
  user attributes, telling the study;
- ``data``: :func:`bench.training.prepare.prepare` (validation, the task's data);
- ``run records``: the run directory, ``manifest.json``, ``status.json`` and ``summary.json``;
- ``W&B init`` / ``W&B finish``: ``make_wandb_logger`` and closing the run (the
  figures logged as images included);
- ``trainer``: the module, loaders, callbacks and the Lightning Trainer;
- ``training steps``: Lightning's training batches (forward, backward, optimizer, the
  loop, the progress display); ``Lightning fit set-up``: the rest of ``trainer.fit``;
- ``validation``: Lightning's evaluation loop;
- ``checkpoints``: ``trainer.save_checkpoint`` (every ``val_every`` steps and at the end);
- ``metric logging``: the loggers' ``log_metrics`` (``metrics.csv``, W&B);
- ``diagnostics: NAME``: each diagnostic callback's hooks, the end-of-run landscape
  and the diagnoses; ``figures``: matplotlib ``savefig`` (where the figures are drawn);
- ``process start``: a fresh ``python`` importing what a worker imports, amortized
  over the trials one worker runs in the quickstart with ``--workers`` workers.

The first trial of a process also pays one-time costs (lazy imports, wandb-core's
start); the breakdown is printed for the later (steady) trials and for the first.

``python tools/trial_profile.py [--trials 3] [--workers 2] [--tracking offline]``
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "sweeps" / "quickstart.yaml"
TRAINING = ("training steps", "validation")
WORKER_IMPORTS = "import bench.sweeps.worker, bench.training.run, bench.tracking, wandb"


class PhaseClock:
    """Exclusive wall time per phase: nested phases take their time out of the outer one."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[tuple[str, float]] = []  # (phase, time it became innermost)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        now = time.perf_counter()
        if self._stack:
            outer, since = self._stack[-1]
            self.totals[outer] += now - since
        self._stack.append((name, now))
        try:
            yield
        finally:
            end = time.perf_counter()
            _, since = self._stack.pop()
            self.totals[name] += end - since
            if self._stack:
                self._stack[-1] = (self._stack[-1][0], end)

    def take(self) -> dict[str, float]:
        """The totals so far, and start again."""
        out, self.totals = dict(self.totals), defaultdict(float)
        return out


def timed(clock: PhaseClock, owner: Any, attr: str, phase: str | Callable[..., str]) -> None:
    """Wrap ``owner.attr`` so each call is timed as ``phase`` (a name or ``f(*args)``)."""
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with clock.phase(phase(*args) if callable(phase) else phase):
            return original(*args, **kwargs)

    setattr(owner, attr, wrapper)


def instrument(clock: PhaseClock, detail: bool = False) -> None:
    """Put the timers on the real functions (where their callers look them up)."""
    import lightning as L
    from lightning.pytorch.loops.evaluation_loop import _EvaluationLoop
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
    from matplotlib.figure import Figure

    import bench.tracking as tracking
    import bench.training.finish as finish
    import bench.training.run as run
    import bench.training.trainer as trainer
    from bench import records
    from bench.diagnostics.guard import DiagnosticErrors
    from bench.sweeps import objective, worker
    from bench.training.csvlog import MetricsCSVLogger

    timed(clock, worker.Worker, "claim", "orchestration")
    for name in ("_trial_attrs", "_configure", "_open_run_dir", "_record"):
        timed(clock, objective, name, "orchestration")
    timed(clock, run, "prepare", "data")
    timed(clock, run, "open_run", "run records")
    timed(clock, run, "assemble", "trainer")
    timed(clock, run, "_fit", "Lightning fit set-up")
    timed(clock, _TrainingEpochLoop, "advance", "training steps")
    timed(clock, run, "finish_run", "run records")
    timed(clock, tracking, "make_wandb_logger", "W&B init")
    timed(clock, finish, "finish_loggers", "W&B finish")
    timed(clock, _EvaluationLoop, "run", "validation")
    timed(clock, L.Trainer, "save_checkpoint", "checkpoints")
    timed(clock, MetricsCSVLogger, "log_metrics", "metric logging")
    timed(clock, MetricsCSVLogger, "save", "metric logging")
    timed(clock, tracking.SafeWandbLogger, "log_metrics", "metric logging")
    timed(clock, records, "write_json", "run records")
    timed(clock, records, "write_status", "run records")
    figure = _figure_file if detail else (lambda *a, **k: "figures")
    diagnostic = _diagnostic_hook if detail else _diagnostic
    timed(clock, Figure, "savefig", figure)
    timed(clock, DiagnosticErrors, "call", diagnostic)
    del trainer  # imported so that its names are bound before run's are wrapped


def _figure_file(fig: Any, path: Any, *args: Any, **kwargs: Any) -> str:
    return f"figures: {Path(path).name.lstrip('.').split('.png')[0]}"  # its temporary file


def _diagnostic(errors: Any, name: str, *args: Any) -> str:
    return f"diagnostics: {name}"


def _diagnostic_hook(errors: Any, name: str, where: str, *args: Any) -> str:
    return f"diagnostics: {name} {where}"


def quickstart_spec(out: Path, tracking: str) -> Path:
    """The quickstart spec, with ``tracking.mode`` set (offline is the spec's own)."""
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["base"]["tracking"]["mode"] = tracking
    path = out / "quickstart.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_trials(
    n: int, tracking: str, tmp: Path, detail: bool = False, run_dirs: list[Path] | None = None
) -> list[tuple[float, dict[str, float]]]:
    """The first ``n`` trials of a fresh quickstart sweep: (wall time, phases) of each;
    ``run_dirs``, when given, gets each trial's run directory."""
    import torch

    from bench.sweeps import worker as worker_mod
    from bench.sweeps.layout import prepare_sweep
    from bench.sweeps.storage import quiet_optuna

    quiet_optuna()
    torch.set_num_threads(1)
    sweep = prepare_sweep(quickstart_spec(tmp, tracking), out=tmp / "sweep")
    w = worker_mod.Worker(sweep, "profile", threads=1)
    clock = PhaseClock()
    instrument(clock, detail)
    out: list[tuple[float, dict[str, float]]] = []
    execute = worker_mod.execute

    def counted(sweep: Any, job: Any, *args: Any, **kwargs: Any) -> str:
        status = execute(sweep, job, *args, **kwargs)
        if run_dirs is not None:
            run_dirs.append(sweep.run_dir(job.phase, job.cell, job.trial.number))
        if len(out) + 1 >= n:
            w.deadline = 0.0  # claim() returns None: the worker stops after this trial
        return status

    worker_mod.execute = counted
    start = time.perf_counter()

    def each_trial() -> None:  # a trial ends where the next claim starts
        nonlocal start
        now = time.perf_counter()
        out.append((now - start, clock.take()))
        start = now

    claim = w.claim

    def claim_and_mark() -> Any:
        if clock.totals:
            each_trial()
        return claim()

    w.claim = claim_and_mark  # type: ignore[method-assign]
    w.run()
    each_trial()
    return out[:n]


def process_start() -> float:
    """Seconds for a fresh interpreter to import what a worker needs before its first trial."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", WORKER_IMPORTS], check=True)
    return time.perf_counter() - start


def trials_per_worker(workers: int) -> float:
    """Quickstart trials one worker runs: cells x (tuning points + seeds) / workers."""
    from bench.sweeps.spec import load_spec

    spec = load_spec(QUICKSTART)
    cells = len(list(spec.cells()))
    per_cell = (spec.tune.trials if spec.tune else 0) + (spec.seeds or 0)
    return cells * per_cell / workers


def breakdown(wall: float, phases: dict[str, float], start_share: float) -> list[str]:
    """Lines: each phase's seconds and share of (trial wall time + amortized start-up)."""
    phases = {**phases, "process start (amortized)": start_share}
    total = wall + start_share
    lines = [f"  {k:<34} {v:7.3f} s  {100 * v / total:5.1f}%" for k, v in _ordered(phases)]
    train = sum(phases.get(k, 0.0) for k in TRAINING)
    diag = sum(v for k, v in phases.items() if k.startswith(("diagnostics", "figures")))
    lines.append(
        f"  {'total':<34} {total:7.3f} s  (unattributed {total - sum(phases.values()):.3f} s)"
    )
    lines.append(f"  training steps + validation: {100 * train / total:.1f}% (target >= 90%)")
    lines.append(f"  + diagnostics and figures:   {100 * (train + diag) / total:.1f}%")
    return lines


def _ordered(phases: dict[str, float]) -> list[tuple[str, float]]:
    return sorted(phases.items(), key=lambda kv: -kv[1])


def mean_phases(trials: list[tuple[float, dict[str, float]]]) -> tuple[float, dict[str, float]]:
    keys = {k for _, p in trials for k in p}
    n = len(trials)
    return (
        sum(w for w, _ in trials) / n,
        {k: sum(p.get(k, 0.0) for _, p in trials) / n for k in keys},
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=3, help="trials to run (the first is warm-up)")
    p.add_argument("--workers", type=int, default=2, help="workers the start-up is shared by")
    p.add_argument("--tracking", default="offline", choices=("offline", "disabled"))
    p.add_argument("--detail", action="store_true", help="each figure and diagnostic hook apart")
    args = p.parse_args(argv)
    if args.trials < 2 or args.workers < 1:
        print("error: --trials must be >= 2 and --workers >= 1", file=sys.stderr)
        return 2
    started = process_start()
    share = started / trials_per_worker(args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        trials = run_trials(args.trials, args.tracking, Path(tmp), args.detail)
    print(f"process start: {started:.2f} s once per worker ({WORKER_IMPORTS})")
    print(f"first trial (one-time costs of the process included): {trials[0][0]:.2f} s")
    print("\n".join(breakdown(trials[0][0], trials[0][1], share)))
    wall, phases = mean_phases(trials[1:])
    print(f"steady trials (mean of {len(trials) - 1}): {wall:.2f} s")
    print("\n".join(breakdown(wall, phases, share)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Launch and supervise the worker processes of a sweep on this machine.

One worker per GPU group (``CUDA_VISIBLE_DEVICES``; a group has ``train.devices``
GPUs when a trial uses DDP) or per CPU slot (cores divided between workers).
Workers are real subprocesses sharing one storage. The launcher watches them:
a worker that dies has its running trial failed and re-enqueued (each worker
writes the trial it runs to ``workers/<id>.json``) and is restarted. SIGINT /
SIGTERM stop the workers cleanly (their trials end ``interrupted`` and are
re-enqueued), so rerunning the same command resumes the sweep.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import ConfigError
from bench.sweeps.args import EXIT_INTERRUPTED, STORAGE_ENV, check_numbers
from bench.sweeps.layout import Sweep, prepare_sweep, resolve_spec
from bench.sweeps.recovery.orphans import recover_orphans
from bench.sweeps.recovery.retry import fail_trial
from bench.sweeps.spec import build_cell_config
from bench.sweeps.storage import quiet_optuna
from bench.training.resources import cpu_slots

MAX_RESTARTS = 3  # per worker slot: a worker that keeps dying is a bug, not bad luck
STOP_GRACE = 60.0  # seconds a stopping worker gets to record its trial before SIGKILL


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: its id, environment additions and torch threads."""

    worker_id: str
    env: dict[str, str]
    threads: int


def parse_devices(devices: str | Sequence[str] | None) -> list[str] | None:
    """``"0,1"`` -> ``["0", "1"]``; ``"cpu"``/``""`` -> ``[]`` (CPU); None -> detect later."""
    if devices is None:
        return None
    if isinstance(devices, str):
        if devices.strip().lower() in ("", "cpu", "none"):
            return []
        devices = devices.split(",")
    out = [d.strip() for d in devices if d.strip()]
    if len(set(out)) != len(out):
        raise ConfigError(f"--devices={','.join(out)}: a device is listed twice")
    return out


def detect_gpus() -> list[str]:
    """The GPUs this process can see (respecting an existing CUDA_VISIBLE_DEVICES)."""
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def assign_devices(
    workers: int | None, gpus: Sequence[str], per_trial: int = 1, cpu_count: int | None = None
) -> list[Slot]:
    """Give each worker its GPUs (groups of ``per_trial``) or its share of the CPU cores.

    GPU: workers default to len(gpus) // per_trial; asking for more is an error.
    CPU: workers default to 1; each process of a trial gets cores // (workers x per_trial)
    threads (at least 1), so workers do not oversubscribe the cores. More worker
    processes than CPU slots (``os.sched_getaffinity``) is an error: each is a
    whole torch process, and on CPU they would only time-share the same cores.
    """
    cores = max(cpu_count or cpu_slots(), 1)
    check_numbers(workers=workers)
    if gpus:
        if len(gpus) % per_trial:
            raise ConfigError(
                f"--devices={','.join(gpus)}: {len(gpus)} GPUs do not split into groups of "
                f"train.devices={per_trial}"
            )
        groups = [list(gpus[i : i + per_trial]) for i in range(0, len(gpus), per_trial)]
        n = workers or len(groups)
        if n > len(groups):
            raise ConfigError(
                f"--workers={n}: needs {n * per_trial} GPUs (train.devices={per_trial} each); "
                f"--devices gives {len(gpus)}"
            )
        threads = max(cores // n, 1)
        return [
            Slot(
                str(i),
                {"CUDA_VISIBLE_DEVICES": ",".join(g), "OMP_NUM_THREADS": str(threads)},
                threads,
            )
            for i, g in enumerate(groups[:n])
        ]
    n = workers or 1
    if n * per_trial > cores:
        raise ConfigError(
            f"--workers={n}: needs {n * per_trial} CPU slots (train.devices={per_trial} each) "
            f"but this process may use {cores}; allowed: 1..{max(cores // per_trial, 1)}"
        )
    threads = max(cores // (n * per_trial), 1)
    env = {
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    return [Slot(str(i), dict(env), threads) for i in range(n)]


@dataclass
class _Proc:
    slot: Slot
    popen: subprocess.Popen
    restarts: int = 0
    done: bool = False


@dataclass
class Supervisor:
    """Spawns the workers, restarts the ones that die, stops them all on request."""

    sweep: Sweep
    slots: list[Slot]
    deadline: float | None = None
    poll: float = 0.5
    events: list[str] = field(default_factory=list)
    stop_requested: bool = False

    def spawn(self, slot: Slot) -> subprocess.Popen:
        cmd = [
            sys.executable,
            "-m",
            "bench",
            "worker",
            str(self.sweep.dir),
            "--out",
            str(self.sweep.dir),
            "--worker-id",
            slot.worker_id,
            "--threads",
            str(slot.threads),
            "--prepared",  # the launcher has checked every cell's data already
        ]
        if self.deadline is not None:
            cmd += ["--deadline", repr(self.deadline)]
        log = open(self.sweep.worker_file(slot.worker_id).with_suffix(".log"), "ab")  # noqa: SIM115
        # The storage URL travels in the environment: a password must not show in `ps`.
        env = {
            **os.environ,
            **slot.env,
            "PYTHONUNBUFFERED": "1",
            STORAGE_ENV: self.sweep.storage_url,
        }
        # Own session: a terminal Ctrl-C reaches only the launcher, which forwards it once.
        return subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def handle_dead(self, proc: _Proc, rc: int, status: str = "failed") -> None:
        """Fail (and re-enqueue) the trial a dead worker was running."""
        state_file = self.sweep.worker_file(proc.slot.worker_id)
        if not state_file.is_file():
            return
        try:
            state = json.loads(state_file.read_text())
        except (OSError, json.JSONDecodeError):
            return
        if state.get("pid") != proc.popen.pid:
            return
        import optuna

        how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"exit code {rc}"
        study = optuna.load_study(study_name=state["study"], storage=self.sweep.open_storage())
        retry = None if status == "interrupted" else self.sweep.spec.retry.max_retries
        if fail_trial(
            study, state["trial_id"], status, f"worker {proc.slot.worker_id} died ({how})", retry
        ):
            self.events.append(
                f"worker {proc.slot.worker_id} died ({how}); trial {state['number']} of {state['study']} failed and re-enqueued"
            )
        state_file.unlink(missing_ok=True)

    def run(self, on_tick: Any = None) -> int:
        """Supervise until every worker is done; returns 0, 1 (gave up) or 130 (stopped)."""
        procs = [_Proc(s, self.spawn(s)) for s in self.slots]
        failed = False
        while not all(p.done for p in procs):
            if self.stop_requested:
                return self._stop(procs)
            for p in procs:
                if p.done or (rc := p.popen.poll()) is None:
                    continue
                if rc == 0:
                    p.done = True
                    continue
                self.handle_dead(p, rc)
                if rc == 2 or p.restarts >= MAX_RESTARTS:
                    self.events.append(f"worker {p.slot.worker_id} exited with {rc}; not restarted")
                    p.done, failed = True, True
                    continue
                p.restarts += 1
                p.popen = self.spawn(p.slot)
            if on_tick is not None:
                on_tick()
            time.sleep(self.poll)
        return 1 if failed else 0

    def _stop(self, procs: list[_Proc]) -> int:
        alive = [p for p in procs if not p.done and p.popen.poll() is None]
        for p in alive:
            p.popen.send_signal(signal.SIGINT)
        end = time.time() + STOP_GRACE
        for p in alive:
            try:
                p.popen.wait(timeout=max(end - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait()
            self.handle_dead(p, p.popen.returncode or -signal.SIGKILL, status="interrupted")
        return EXIT_INTERRUPTED


def report_failed_cells(sweep: Sweep) -> bool:
    """Print each cell whose every trial failed, with its first error; True if any."""
    from bench.sweeps.progress.standing import failed_cells

    failed = failed_cells(sweep.open_storage(), sweep.spec)
    for cell, reason in failed.items():
        print(f"error: every trial of cell {cell} failed; first error: {reason}", file=sys.stderr)
    return bool(failed)


def dry_run_sweep(
    spec_path: str | Path, workers: int | None, devices: str | Sequence[str] | None = None
) -> int:
    """Print the cells, tuning points, runs and an estimated time; create nothing.

    The workers and each one's threads are those the same command without ``--dry-run``
    would start (:func:`_slots`: ``--workers``, else one per GPU group, else 1 on CPU).
    ``--devices`` naming GPUs this machine does not have is planned all the same (a plan
    for the GPU machine, previewed on a laptop), with the step time said to be the CPU's."""
    from bench.sweeps.layout import resolve_spec
    from bench.sweeps.preflight import check_cells, make_plan, print_plan

    spec, _ = resolve_spec(spec_path)
    slots = _slots(spec_path, workers, devices, dry_run=True)
    check_cells(spec, str(spec_path))
    print_plan(spec, make_plan(spec, slots[0].threads), len(slots))
    gpus = parse_devices(devices)
    if gpus and not detect_gpus():
        print(f"(no GPU is visible here: the plan is for --devices {','.join(gpus)}, but the "
              "step time is this machine's CPU's; on the GPUs a step can take much less)")  # fmt: skip
    return 0


def _slots(
    spec_path: str | Path,
    workers: int | None,
    devices: str | Sequence[str] | None,
    dry_run: bool = False,
) -> list[Slot]:
    """Each worker's devices, from ``--workers``/``--devices`` and a trial's ``train.devices``.

    GPUs named by ``--devices`` must be visible, except in a dry run, which only plans."""
    spec, _ = resolve_spec(spec_path)
    per_trial = build_cell_config(spec, {}, "base").train.devices
    gpus = parse_devices(devices)
    visible = detect_gpus()
    if gpus and not visible and not dry_run:
        raise ConfigError(f"--devices={','.join(gpus)}: no GPU is visible here; use --devices cpu")
    return assign_devices(workers, visible if gpus is None else gpus, per_trial)


def _supervise(sup: Supervisor, display: Any) -> int:
    """Run the workers to the end, refreshing the live table or printing a line per trial."""
    from bench.sweeps.progress.status import TrialFeed

    if display is not None:
        with display:
            return sup.run(on_tick=display.refresh)
    feed = TrialFeed(sup.sweep)  # piped: one line per finished trial
    code = sup.run(on_tick=feed.poll)
    feed.poll(force=True)
    return code


def run_sweep(
    spec_path: str | Path,
    workers: int | None = None,
    devices: str | Sequence[str] | None = None,
    storage: str | None = None,
    out: str | Path | None = None,
    *,
    live: bool | None = None,
    command: str | None = None,
    dry_run: bool = False,
    extend: bool = False,
) -> int:
    """Run (or resume) a sweep with local worker processes; returns an exit code.

    ``devices``: ``"0,1"`` GPU ids, ``"cpu"`` for CPU slots, None to use every
    visible GPU (CPU when there is none). ``live``: show the rich progress display
    (default: when stdout is a terminal).
    """
    from bench.sweeps.progress.status import LiveStatus, next_steps, print_sweep_status
    from bench.sweeps.progress.wandb_run import log_sweep_to_wandb

    quiet_optuna()
    if dry_run:
        return dry_run_sweep(spec_path, workers, devices)
    slots = _slots(spec_path, workers, devices)  # checked before the sweep directory exists
    sweep = prepare_sweep(spec_path, storage=storage, out=out, command=command, extend=extend)
    wall = sweep.spec.budget.wall_clock
    sup = Supervisor(sweep, slots, deadline=time.time() + wall if wall else None)
    sup.events += recover_orphans(sweep)  # trials of workers that died with a previous launcher

    def request_stop(signum: int, frame: Any) -> None:
        sup.stop_requested = True

    old = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    display = (
        LiveStatus(sweep, workers=len(slots))
        if (live if live is not None else sys.stdout.isatty())
        else None
    )
    try:
        code = _supervise(sup, display)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    for e in sup.events:
        print(e, file=sys.stderr)
    print_sweep_status(sweep)
    if code == 0 and report_failed_cells(sweep):
        code = 1
    if code == 0:
        log_sweep_to_wandb(sweep)
    if code in (0, 1):  # finished, even with failed cells: what there is can be looked at
        print("\n".join(next_steps(sweep)))
    if code == EXIT_INTERRUPTED:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
    return code

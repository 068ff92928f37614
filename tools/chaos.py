"""A sweep under faults: does every planned trial complete exactly once?

``python tools/chaos.py --storage both --seed 7`` runs, for each storage (the
journal file, then PostgreSQL), a compare sweep of ``--trials`` tiny trials (a grid
of learning rates x pre/post-LN: every trial is one planned point) with 8 workers:
one launcher (``bench sweep --workers 2``, two workers of its own) and six
``bench worker`` processes joining it, as a second machine would. A seeded
scheduler (the seed is printed; ``--seed`` replays the schedule) injects, at random
times, each fault kind ``--per-kind`` times:

- ``worker-kill``: SIGKILL of one worker;
- ``launcher-kill``: SIGKILL of the launcher with all its workers (a machine crash);
- ``sigint``: Ctrl-C to the launcher or to one worker;
- ``pg-restart``: the PostgreSQL server restarted (PostgreSQL only);
- ``torn-journal``: every process killed mid-write, the journal's last record cut in
  half (journal only);
- ``disk-full``: the file system of the run directories (a small tmpfs) filled for
  ``--full-seconds``;
- ``corrupt-checkpoint``: a running trial's ``last.ckpt`` cut in half, then its worker
  killed, so that its retry must resume from the damaged file.

After each fault the sweep is resumed as a user would: a process that stopped
with work left is started again with the same command. At the end
:func:`check_sweep` reads the storage and the run directories: each planned point
complete exactly once (none lost, none duplicated), no trial left running or
waiting, every failed attempt with its reason, no run directory that looks finished
(``summary.json``) without being a complete trial's whole record; and
:func:`verify_resumed` re-trains, uninterrupted, some trials that resumed from a
checkpoint and compares their final metrics. A rich table summarises both storages.

Needs root (tmpfs mounts). PostgreSQL: ``--postgres URL`` of a server this tool
may restart with ``--pg-restart`` (a shell command; default: a private cluster,
``pg_ctlcluster 15 chaos restart``, so other users of the default server are not hit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KINDS = (
    "worker-kill",
    "launcher-kill",
    "sigint",
    "pg-restart",
    "torn-journal",
    "disk-full",
    "corrupt-checkpoint",
)
ONLY = {"pg-restart": "postgres", "torn-journal": "journal"}  # kinds of one storage only
CELLS = ("pre", "post")  # model.norm_placement: the two cells
METRIC_KEYS = ("loss", "acc", "exact_match")  # compared between resumed and uninterrupted runs


# ----------------------------------------------------------------------------- the sweep


def lr_grid(trials: int) -> list[float]:
    """``trials // 2`` learning rates, log-spaced in [1e-3, 1e-2], rounded to 6 digits."""
    n = max(trials // len(CELLS), 1)
    return [round(1e-3 * 10 ** (i / max(n - 1, 1)), 6) for i in range(n)]


def chaos_spec(trials: int, tracking: str = "offline", steps: int = 30) -> dict[str, Any]:
    """Two cells x a grid of learning rates: each trial a planned point, a few seconds of training.

    Validation (and so a checkpoint) every 10 steps gives a killed trial something to
    resume from; retries are generous, since many faults may hit one trial.
    """
    grid = lr_grid(trials)
    return {
        "name": "chaos",
        "base": {
            "task": {
                "name": "copy",
                "seq_len": 6,
                "n_symbols": 8,
                "n_train": 128,
                "n_val": 32,
                "eval_scales": [1],
                "batch_size": 16,
            },
            "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_len": 32},
            "train": {
                "max_steps": steps,
                "val_every": 10,
                "warmup_steps": 2,
                "log_every": 5,
                "threads": 1,
                "precision": "32-true",
            },
            "tracking": {"mode": tracking},
            "diagnostics": {
                "gradients": False,
                "noise_scale": False,
                "attention_entropy": False,
                "throughput": False,
                "figures": False,
            },
        },
        "compare": {"model.norm_placement": list(CELLS)},
        "tune": {"params": {"train.lr": {"choices": grid}}, "trials": len(grid), "sampler": "grid"},
        "seeds": 0,
        "pruner": "none",
        "retry": {"max_retries": 50},  # bench's heartbeats: every 10 s, stale after 20 s
    }


def planned_points(spec: dict[str, Any]) -> list[tuple[str, float]]:
    """(study name, learning rate) of every planned trial."""
    grid = spec["tune"]["params"]["train.lr"]["choices"]
    cells = spec["compare"]["model.norm_placement"]
    return [(f"{spec['name']}/tune/norm_placement={c}", lr) for c in cells for lr in grid]


# ----------------------------------------------------------------------------- the checks


@dataclass
class Findings:
    """What :func:`check_sweep` found; ``ok`` when nothing is wrong."""

    planned: int = 0
    complete: int = 0
    lost: list[str] = field(default_factory=list)  # planned points with no complete trial
    duplicated: list[str] = field(default_factory=list)  # points complete more than once
    unfinished: list[str] = field(default_factory=list)  # trials left running / waiting
    unexplained: list[str] = field(default_factory=list)  # failed trials without a reason
    bad_run_dirs: list[str] = field(default_factory=list)  # look finished, are not whole
    failed_attempts: Counter = field(default_factory=Counter)  # why attempts failed (first words)
    resumed: list[tuple[str, int, Path]] = field(default_factory=list)  # (trial, step, run dir)
    refused: int = 0  # resumes refused for an unreadable checkpoint (started from step 0)

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.duplicated or self.unfinished or self.unexplained or self.bad_run_dirs
        )


def _reason_kind(reason: str) -> str:
    r = reason.lower()
    for key, label in (
        ("no space left", "disk full"),
        ("interrupted", "interrupted"),
        ("heartbeat", "no heartbeat"),
        ("died with its launcher", "launcher died"),
        ("died (", "worker died"),
        ("budget already taken", "given back"),
    ):
        if key in r:
            return label
    return reason.split(":")[0][:40] or "?"


def _run_dir_problem(run_dir: Path, complete_dirs: dict[Path, dict[str, Any]]) -> str | None:
    """Why a run directory that has ``summary.json`` is not a complete trial's whole record."""
    summary = run_dir / "summary.json"
    if not summary.exists():
        return None  # it does not look finished: an attempt that stopped, fine
    try:
        data = json.loads(summary.read_text())
    except (OSError, ValueError) as e:
        return f"unreadable summary.json ({type(e).__name__})"
    for name in ("config.yaml", "metrics.csv", "status.json", "manifest.json"):
        if not (run_dir / name).is_file() or (run_dir / name).stat().st_size == 0:
            return f"summary.json but no {name}"
    try:
        status = json.loads((run_dir / "status.json").read_text()).get("status")
    except (OSError, ValueError):
        return "summary.json but an unreadable status.json"
    if status != data.get("status"):
        return f"summary.json says {data.get('status')}, status.json {status}"
    if run_dir.resolve() not in complete_dirs:
        return "summary.json but no complete trial records this directory"
    metrics = complete_dirs[run_dir.resolve()]
    for k, v in metrics.items():
        got = (data.get("metrics") or {}).get(k)
        if isinstance(v, float) and not (isinstance(got, float) and math.isclose(got, v)):
            return f"summary.json's {k} = {got}, the trial recorded {v}"
    return None


def check_sweep(sweep_dir: Path, storage_url: str, spec: dict[str, Any]) -> Findings:
    """Read the storage and the run directories of a finished chaos sweep."""
    import optuna
    from optuna.trial import TrialState

    from bench.sweeps.storage import open_storage

    storage = open_storage(storage_url)
    out = Findings()
    points = planned_points(spec)
    out.planned = len(points)
    done: Counter = Counter()
    complete_dirs: dict[Path, dict[str, Any]] = {}
    for study_name in sorted({s for s, _ in points}):
        study = optuna.load_study(study_name=study_name, storage=storage)
        for t in study.get_trials(deepcopy=False):
            label = f"{study_name}#{t.number}"
            a = t.user_attrs
            if t.state == TrialState.COMPLETE:
                done[(study_name, t.params.get("train.lr"))] += 1
                if a.get("run_dir"):
                    complete_dirs[Path(a["run_dir"]).resolve()] = a.get("metrics") or {}
                if a.get("resumed_from_step"):
                    out.resumed.append((label, int(a["resumed_from_step"]), Path(a["run_dir"])))
            elif t.state in (TrialState.RUNNING, TrialState.WAITING):
                out.unfinished.append(f"{label} is {t.state.name}")
            elif t.state == TrialState.FAIL:
                reason = str(a.get("reason") or "")
                if not reason.strip():
                    out.unexplained.append(f"{label} failed without a reason")
                out.failed_attempts[_reason_kind(reason)] += 1
            out.refused += "resume_refused" in a
    for point in points:
        n = done.get(point, 0)
        what = f"{point[0]} lr={point[1]}"
        if n == 0:
            out.lost.append(what)
        elif n > 1:
            out.duplicated.append(f"{what} complete {n} times")
    out.complete = sum(done[p] for p in points)
    unplanned = set(done) - set(points)
    out.duplicated += [f"{s} lr={lr}: complete but never planned" for s, lr in sorted(unplanned)]
    for run_dir in sorted((sweep_dir / "runs").glob("*")):
        problem = _run_dir_problem(run_dir, complete_dirs)
        if problem:
            out.bad_run_dirs.append(f"{run_dir.name}: {problem}")
    return out


def verify_resumed(findings: Findings, limit: int, work: Path) -> tuple[int, list[str]]:
    """Re-train up to ``limit`` resumed trials uninterrupted; (equal count, differences)."""
    from bench.config import build_run_config
    from bench.training.run import train_run

    equal, diffs = 0, []
    for label, _, run_dir in findings.resumed[:limit]:
        summary = json.loads((run_dir / "summary.json").read_text())["metrics"]
        cfg = build_run_config(
            run_dir / "config.yaml",
            {"tracking.run_dir": str(work / run_dir.name), "tracking.mode": "disabled"},
        )
        fresh = train_run(cfg).metrics
        keys = [k for k in summary if any(m in k for m in METRIC_KEYS) and k in fresh]
        bad = [
            f"{label} {k}: resumed {summary[k]!r}, uninterrupted {fresh[k]!r}"
            for k in keys
            if not math.isclose(summary[k], fresh[k], rel_tol=1e-5, abs_tol=1e-7)
        ]
        if keys and not bad:
            equal += 1
        diffs += bad or ([] if keys else [f"{label}: no metric to compare"])
    return equal, diffs


# ----------------------------------------------------------------------------- processes


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@dataclass
class Proc:
    """One process the user started (the launcher or a joining worker) and restarts."""

    name: str
    cmd: list[str]
    log: Path
    popen: subprocess.Popen | None = None
    starts: int = 0
    done: bool = False

    def start(self, env: dict[str, str]) -> None:
        with open(self.log, "ab") as f:
            self.popen = subprocess.Popen(
                self.cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.starts += 1
        self.done = False

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Fleet:
    """The launcher and the joining workers of one sweep, restarted as a user would."""

    sweep_dir: Path
    spec_path: Path
    storage: str | None
    workers: int
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)
    resumes: int = 0

    def __post_init__(self) -> None:
        py = [sys.executable, "-m", "bench"]
        store = ["--storage", self.storage] if self.storage else []
        logs = self.sweep_dir.parent
        name = self.sweep_dir.name
        self.procs.append(
            Proc(
                "launcher",
                [
                    *py,
                    "sweep",
                    str(self.spec_path),
                    "--out",
                    str(self.sweep_dir),
                    "--workers",
                    "2",
                    *store,
                ],
                logs / f"{name}-launcher.log",
            )
        )
        for i in range(2, self.workers):
            self.procs.append(
                Proc(
                    f"w{i}",
                    [
                        *py,
                        "worker",
                        str(self.spec_path),
                        "--out",
                        str(self.sweep_dir),
                        "--worker-id",
                        f"w{i}",
                        "--threads",
                        "1",
                        *store,
                    ],
                    logs / f"{name}-w{i}.log",
                )
            )

    @property
    def launcher(self) -> Proc:
        return self.procs[0]

    def start_all(self) -> None:
        for p in self.procs:
            p.start(self.env)

    def tend(self) -> bool:
        """Restart what stopped with work left; True when every process finished with 0."""
        for p in self.procs:
            if p.popen is None or p.alive() or p.done:
                continue
            if p.popen.returncode == 0:
                p.done = True
                continue
            p.start(self.env)  # "rerun the same command to resume"
            self.resumes += 1
        return all(p.done for p in self.procs)

    def worker_pids(self) -> list[int]:
        """Every live worker: the launcher's children and the joining workers."""
        pids = [p.popen.pid for p in self.procs[1:] if p.alive() and p.popen]
        if self.launcher.alive() and self.launcher.popen:
            pids += _children(self.launcher.popen.pid)
        return pids

    def kill_everything(self) -> None:
        """SIGKILL every process of the sweep at once (a machine crash)."""
        pids = self.worker_pids() + self.strays()
        if self.launcher.alive() and self.launcher.popen:
            pids.append(self.launcher.popen.pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for p in self.procs:
            if p.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.popen.wait(timeout=30)
        time.sleep(0.5)

    def strays(self) -> list[int]:
        """Workers of this sweep no launcher watches: spawned as their launcher was killed."""
        out = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                args = cmdline.read_bytes().split(b"\0")
            except OSError:
                continue
            if b"worker" in args and str(self.sweep_dir).encode() in args:
                out.append(int(cmdline.parent.name))
        return out

    def stop(self) -> None:
        self.kill_everything()


# ----------------------------------------------------------------------------- faults


@dataclass
class Faults:
    """The seeded schedule of faults and how to inject each."""

    fleet: Fleet
    rng: random.Random
    runs_mount: Path | None
    pg_restart: str | None
    full_seconds: float
    injected: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)

    def inject(self, kind: str) -> bool:
        ok = getattr(self, "_" + kind.replace("-", "_"))()
        (self.injected if ok else self.skipped)[kind] += 1
        return bool(ok)

    def _say(self, text: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {text}")
        print(f"  chaos: {text}", flush=True)

    def _worker_kill(self) -> bool:
        pids = self.fleet.worker_pids()
        if not pids:
            return False
        pid = self.rng.choice(sorted(pids))
        os.kill(pid, signal.SIGKILL)
        self._say(f"SIGKILL worker pid {pid}")
        return True

    def _launcher_kill(self) -> bool:
        launcher = self.fleet.launcher
        if not launcher.alive() or launcher.popen is None:
            return False
        pids = [launcher.popen.pid, *_children(launcher.popen.pid)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        launcher.popen.wait()
        self._say(f"SIGKILL launcher and its {len(pids) - 1} workers")
        return True

    def _sigint(self) -> bool:
        live = [p for p in self.fleet.procs if p.alive() and p.popen]
        if not live:
            return False
        p = self.rng.choice(live)
        assert p.popen is not None
        p.popen.send_signal(signal.SIGINT)
        self._say(f"SIGINT to {p.name}")
        return True

    def _pg_restart(self) -> bool:
        if not self.pg_restart:
            return False
        t = time.time()
        subprocess.run(shlex.split(self.pg_restart), check=True, capture_output=True)
        self._say(f"PostgreSQL restarted ({time.time() - t:.1f} s)")
        return True

    def _torn_journal(self) -> bool:
        journal = self.fleet.sweep_dir / "journal.log"
        if not journal.is_file() or journal.stat().st_size == 0:
            return False
        self.fleet.kill_everything()
        last = journal.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        with open(journal, "ab") as f:  # the crash cut the next record in half
            f.write(last[: max(len(last) // 2, 1)])
        self._say("machine crash mid-write: every process killed, the journal's last record torn")
        return True

    def _disk_full(self) -> bool:
        if self.runs_mount is None:
            return False
        filler = self.runs_mount / ".chaos-filler"
        chunk = b"\0" * 2**22
        with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as f:
            while True:  # until ENOSPC: full to the last block
                f.write(chunk[: max(os.statvfs(self.runs_mount).f_bavail * 4096, 4096)])
        self._say(f"run directories' disk full for {self.full_seconds:.0f} s")
        time.sleep(self.full_seconds)
        filler.unlink()
        return True

    def _corrupt_checkpoint(self) -> bool:
        from bench.sweeps.spec import slug

        for _ in range(40):  # wait for a running trial with a checkpoint
            for state_file in sorted((self.fleet.sweep_dir / "workers").glob("*.json")):
                try:
                    state = json.loads(state_file.read_text())
                except (OSError, ValueError):
                    continue
                try:
                    cell = str(state["study"]).rsplit("/", 1)[-1]
                    run = (
                        self.fleet.sweep_dir / "runs" / f"tune-{slug(cell)}-t{state['number']:04d}"
                    )
                except (KeyError, TypeError, ValueError):
                    continue
                ckpt = run / "checkpoints" / "last.ckpt"
                if not ckpt.is_file() or (run / "summary.json").exists():
                    continue
                try:
                    pid = int(state["pid"])
                    os.kill(pid, 0)  # a live worker: not the stale file of a dead one
                    data = ckpt.read_bytes()
                    ckpt.write_bytes(data[: len(data) // 2])
                except (OSError, KeyError, ValueError):
                    continue
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._say(f"{ckpt.parent.parent.name}/last.ckpt cut in half, its worker killed")
                return True
            time.sleep(0.5)
        return False


def schedule(rng: random.Random, storage: str, per_kind: int) -> list[str]:
    """The faults of one storage, in a seeded random order."""
    kinds = [k for k in KINDS if ONLY.get(k, storage) == storage]
    plan = [k for k in kinds for _ in range(per_kind)]
    rng.shuffle(plan)
    return plan


# ----------------------------------------------------------------------------- one storage


@dataclass
class Outcome:
    storage: str
    findings: Findings
    injected: Counter
    skipped: Counter
    resumes: int
    verified: tuple[int, int]  # (equal, tried)
    diffs: list[str]
    wall: float


def _mount_tmpfs(path: Path, size_mb: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], check=True
    )


def run_storage(storage: str, args: argparse.Namespace, rng: random.Random) -> Outcome:
    """One chaos sweep on ``storage`` (journal or postgres), checked."""
    from bench.sweeps.layout import prepare_sweep

    spec = chaos_spec(args.trials, args.tracking, args.steps)
    root = args.out / storage
    root.mkdir(parents=True, exist_ok=True)
    spec_path = root / "chaos.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    sweep_dir = root / "sweep"
    url = None
    if storage == "postgres":
        db = f"chaos_{uuid.uuid4().hex[:8]}"
        base = args.postgres.rsplit("/", 1)[0]
        subprocess.run(
            ["psql", args.postgres, "-c", f"CREATE DATABASE {db}"], check=True, capture_output=True
        )
        url = f"{base}/{db}"
    prepare_sweep(str(spec_path), storage=url, out=str(sweep_dir))
    mount = None
    if os.geteuid() == 0:
        mount = sweep_dir / "runs"
        _mount_tmpfs(mount, args.tmpfs_mb)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true"}
    fleet = Fleet(sweep_dir, spec_path, url, args.workers, env)
    faults = Faults(
        fleet, rng, mount, args.pg_restart if storage == "postgres" else None, args.full_seconds
    )
    plan = schedule(rng, storage, args.per_kind)
    gaps = [rng.uniform(args.gap * 0.5, args.gap * 1.5) for _ in plan]
    print(
        f"chaos [{storage}]: {len(planned_points(spec))} trials, {args.workers} workers, "
        f"faults in order: {', '.join(plan)}",
        flush=True,
    )
    # bench's imports (prepare_sweep) may have installed their own SIGINT handler:
    # Ctrl-C (or SIGTERM) to this tool must stop it, and its finally stop the fleet.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    start = time.time()
    fleet.start_all()
    next_at = start + args.warmup + gaps[0] if plan else math.inf
    try:
        while True:
            finished = fleet.tend()
            if finished and not plan:
                break
            if finished and plan:  # the sweep ended before every fault: never silently
                print(
                    f"chaos [{storage}]: sweep finished with {len(plan)} faults not injected",
                    flush=True,
                )
                faults.skipped.update(plan)
                break
            if time.time() >= next_at and plan:
                kind = plan[0]
                if faults.inject(kind) or faults.skipped[kind] > 20:
                    plan.pop(0)
                    gaps.pop(0)
                    next_at = time.time() + (gaps[0] if gaps else 0)
                else:
                    faults.skipped[kind] -= 1  # nothing to hit yet: try again shortly
                    next_at = time.time() + 2
            if time.time() - start > args.timeout:
                raise SystemExit(f"chaos [{storage}]: not finished after {args.timeout} s")
            time.sleep(0.5)
    finally:
        fleet.stop()
        if mount is not None and sys.exc_info()[0] is not None:
            subprocess.run(["umount", str(mount)], check=False)
    wall = time.time() - start
    findings = check_sweep(sweep_dir, url or str(sweep_dir / "journal.log"), spec)
    work = Path(tempfile.mkdtemp(prefix="chaos-verify-"))
    verified = verify_resumed(findings, args.verify, work)
    tried = min(len(findings.resumed), args.verify)
    if mount is not None:
        subprocess.run(["umount", str(mount)], check=False)
    return Outcome(
        storage,
        findings,
        faults.injected,
        faults.skipped,
        fleet.resumes,
        (verified[0], tried),
        verified[1],
        wall,
    )


# ----------------------------------------------------------------------------- the table


def table(outcomes: list[Outcome]) -> Any:
    from rich.table import Table

    t = Table(title="bench chaos run")
    t.add_column("")
    for o in outcomes:
        t.add_column(o.storage, justify="right")
    rows: list[tuple[str, list[str]]] = []
    for kind in KINDS:
        rows.append(
            (
                f"faults: {kind}",
                [
                    str(o.injected[kind]) if ONLY.get(kind, o.storage) == o.storage else "n/a"
                    for o in outcomes
                ],
            )
        )
    rows += [
        ("trials planned", [str(o.findings.planned) for o in outcomes]),
        ("complete", [str(o.findings.complete) for o in outcomes]),
        ("lost", [str(len(o.findings.lost)) for o in outcomes]),
        ("duplicated", [str(len(o.findings.duplicated)) for o in outcomes]),
        ("left running/waiting", [str(len(o.findings.unfinished)) for o in outcomes]),
        (
            "failed attempts (all with a reason)",
            [
                f"{sum(o.findings.failed_attempts.values())}"
                + (
                    ""
                    if not o.findings.unexplained
                    else f" ({len(o.findings.unexplained)} without)"
                )
                for o in outcomes
            ],
        ),
        (
            "half-written run dirs that look finished",
            [str(len(o.findings.bad_run_dirs)) for o in outcomes],
        ),
        ("resumed from a checkpoint", [str(len(o.findings.resumed)) for o in outcomes]),
        (
            "  re-trained uninterrupted: equal metrics",
            [f"{o.verified[0]}/{o.verified[1]}" for o in outcomes],
        ),
        ("unreadable checkpoint: started over", [str(o.findings.refused) for o in outcomes]),
        ("processes restarted (user reruns)", [str(o.resumes) for o in outcomes]),
        ("wall time", [f"{o.wall / 60:.1f} min" for o in outcomes]),
    ]
    for label, cells in rows:
        t.add_row(label, *cells)
    return t


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--storage", choices=("journal", "postgres", "both"), default="both")
    p.add_argument("--seed", type=int, default=None, help="replays a schedule (default: random)")
    p.add_argument("--trials", type=int, default=200)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--steps", type=int, default=30, help="training steps of each trial")
    p.add_argument("--per-kind", type=int, default=3, help="faults of each kind per storage")
    p.add_argument("--gap", type=float, default=12.0, help="mean seconds between faults")
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the first fault")
    p.add_argument("--full-seconds", type=float, default=8.0)
    p.add_argument("--tmpfs-mb", type=int, default=256)
    p.add_argument("--tracking", choices=("offline", "disabled"), default="offline")
    p.add_argument("--verify", type=int, default=8, help="resumed trials to re-train")
    p.add_argument("--timeout", type=float, default=3600.0)
    p.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5440/postgres")
    p.add_argument("--pg-restart", default="pg_ctlcluster 15 chaos restart")
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10**6)
    print(f"chaos: seed {seed} (replay the schedule with --seed {seed})", flush=True)
    args.out = args.out or Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    from bench.sweeps.storage import quiet_optuna

    quiet_optuna()
    storages = ["journal", "postgres"] if args.storage == "both" else [args.storage]
    outcomes = []
    for i, storage in enumerate(storages):
        outcomes.append(run_storage(storage, args, random.Random(seed * 1000 + i)))
    from rich.console import Console

    console = Console()
    console.print(table(outcomes))
    for o in outcomes:
        f = o.findings
        for label, items in (
            ("lost", f.lost),
            ("duplicated", f.duplicated),
            ("left unfinished", f.unfinished),
            ("no reason", f.unexplained),
            ("bad run dir", f.bad_run_dirs),
            ("metrics differ", o.diffs),
        ):
            for item in items[:10]:
                console.print(f"[{o.storage}] {label}: {item}", markup=False)
        console.print(f"[{o.storage}] why attempts failed: {dict(f.failed_attempts)}", markup=False)
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "storage": o.storage,
                        "seed": seed,
                        "injected": dict(o.injected),
                        "skipped": dict(o.skipped),
                        "planned": o.findings.planned,
                        "complete": o.findings.complete,
                        "lost": o.findings.lost,
                        "duplicated": o.findings.duplicated,
                        "unfinished": o.findings.unfinished,
                        "unexplained": o.findings.unexplained,
                        "bad_run_dirs": o.findings.bad_run_dirs,
                        "failed_attempts": dict(o.findings.failed_attempts),
                        "resumed": len(o.findings.resumed),
                        "verified": o.verified,
                        "diffs": o.diffs,
                        "refused": o.findings.refused,
                        "restarts": o.resumes,
                        "wall_s": o.wall,
                    }
                    for o in outcomes
                ],
                indent=1,
            )
        )
    bad = any(not o.findings.ok or o.diffs for o in outcomes)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

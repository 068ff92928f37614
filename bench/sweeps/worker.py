"""The worker loop: claim a trial, run it, tell the study; repeat until the sweep is done.

Any number of workers (processes, machines) share one storage. A worker:

1. tunes: for each cell (starting at a different cell per worker) it takes a
   WAITING trial (a retry) or, while the cell's budget has room, asks a new one.
   A fresh trial asked when the budget was already full (a race with another
   worker) is given back as ``surplus``;
2. when every cell is tuned, enqueues the seed jobs (best config x seeds) and
   runs them; a job enqueued twice is given back as ``duplicate``;
3. waits while other workers still run trials that might fail and be retried;
4. stops at the wall-clock deadline (no new trial starts after it).

A trial that fails on a full disk is re-enqueued, and its worker pauses
:data:`DISK_FULL_PAUSE` seconds before it claims again: otherwise each worker
would burn the trial's retries in a fraction of a second each.

SIGINT (Ctrl-C): the running trial ends FAIL ``interrupted`` and is re-enqueued;
exit code 130. SIGTERM, SIGUSR1, SIGUSR2 (preemption, :mod:`bench.training.preemption`):
the running trial checkpoints at its next step, goes back to WAITING with its
number (``resume.py``), and the worker exits with :data:`EXIT_PREEMPTED`; the
next worker to ask resumes it. ``bench worker SPEC ...`` (``python -m bench worker``) runs one worker.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import optuna

from bench import records
from bench.sweeps.args import (
    EXIT_INTERRUPTED,
    EXIT_PREEMPTED,
    add_worker_arguments,
    check_numbers,
)
from bench.sweeps.ddp import ddp_follower, run_ddp_follower
from bench.sweeps.layout import Sweep, prepare_sweep
from bench.sweeps.objective import DISK_FULL, Interrupted, TrialJob, execute, host_worker_id
from bench.sweeps.recovery.heartbeat import (
    heartbeat,
    heartbeat_interval,
    heartbeats,
    unbeating_trial_ids,
)
from bench.sweeps.recovery.orphans import identity, recover_orphans
from bench.sweeps.recovery.resume import hold_for_resumption, holds_slot
from bench.sweeps.recovery.retry import fail_trial, requeue_lost_retries
from bench.sweeps.slurm.ddp_tasks import Leader, TaskLayout, follow
from bench.sweeps.space import SHARED_SEED, make_pruner, make_sampler
from bench.sweeps.spec import build_cell_config
from bench.sweeps.storage import quiet_optuna
from bench.sweeps.study import (
    enqueue_missing_seed_jobs,
    is_duplicate,
    plan,
    seed_jobs,
    seed_study_name,
    tally,
)
from bench.training.preemption import PREEMPTION, Preempted

WAIT = "wait"  # claim() result: nothing to start now, but the sweep is not finished
DISK_FULL_PAUSE = 10.0  # seconds a worker waits after a trial failed on a full disk
ORPHAN_AFTER = 3  # grace periods after which a RUNNING RDB trial without any heartbeat is orphaned


@dataclass
class Worker:
    """One worker's view of the sweep and the studies it has opened."""

    sweep: Sweep
    worker_id: str
    threads: int | None = None
    deadline: float | None = None  # epoch seconds
    poll: float = 0.5
    storage: Any = None
    studies: dict[str, optuna.Study] = field(default_factory=dict)
    current: tuple[optuna.Study, int] | None = None  # claimed trial (study, trial_id)
    preempted: Preempted | None = None  # set when a preemption signal stopped the worker
    group: Leader | None = None  # task 0 of a worker of several Slurm tasks (ddp_tasks.py)

    def __post_init__(self) -> None:
        self.storage = self.sweep.open_storage()
        self.label = host_worker_id(self.worker_id)
        base = build_cell_config(self.sweep.spec, {}, "base")
        self._steps, self._every = base.train.max_steps, base.train.val_every

    def study(self, name: str) -> optuna.Study:
        """The study with this worker's sampler and the spec's pruner.

        Seeded per worker so workers do not propose twins, except samplers that
        need one shared order (grid): those get the spec's seed on every worker.
        """
        if name not in self.studies:
            spec = self.sweep.spec
            seed = (spec.seed + zlib.crc32(f"{self.label}/{name}".encode())) % 2**31
            if spec.space is not None and spec.space.sampler in SHARED_SEED:
                seed = spec.seed
            self.studies[name] = optuna.load_study(
                study_name=name,
                storage=self.storage,
                sampler=make_sampler(spec, seed),
                pruner=make_pruner(spec, self._steps, self._every),
            )
        return self.studies[name]

    # ------------------------------------------------------------------ claiming

    def claim(self) -> TrialJob | str | None:
        """The next trial to run, WAIT, or None when there is nothing left for this worker."""
        if self.deadline is not None and time.time() >= self.deadline:
            return None
        spec = self.sweep.spec
        cells = plan(spec)
        shift = zlib.crc32(self.label.encode()) % len(cells)  # spread workers over cells
        cells = cells[shift:] + cells[:shift]
        used = {c.study: tally(self.study(c.study).get_trials(deepcopy=False)) for c in cells}
        cap_left = (spec.budget.trials or 10**9) - sum(t.used for t in used.values())
        busy = False
        phase = "search" if spec.search is not None else "tune"
        for cell in cells:
            study = self.study(cell.study)
            self._fail_stale(study)
            t = used[cell.study]
            if t.retries_waiting == 0 and (t.used >= cell.budget or cap_left <= 0):
                busy |= t["running"] > 0
                continue
            trial = self._ask(study)
            frozen = study._storage.get_trial(trial._trial_id)
            fresh = not holds_slot(frozen)  # not a retry or preempted: is there budget left?
            if (
                fresh
                and tally(study.get_trials(deepcopy=False), below=trial.number).used >= cell.budget
            ):
                self._give_back(study, trial._trial_id, "surplus")
                busy = True
                continue
            if "job" in frozen.user_attrs and is_duplicate(
                study.get_trials(deepcopy=False), frozen
            ):
                self._give_back(
                    study, trial._trial_id, "duplicate"
                )  # a tuning point enqueued twice
                busy = True
                continue
            tags = [f"{k.removeprefix('model.')}={v}" for k, v in cell.overrides.items()]
            return TrialJob(study, trial, phase, cell.key, dict(cell.overrides), tags=tags)
        if busy:
            return WAIT
        return self._claim_seed() if spec.seeds else None

    def _claim_seed(self) -> TrialJob | str | None:
        import json

        study = self.study(seed_study_name(self.sweep.spec))
        self._fail_stale(study)
        enqueue_missing_seed_jobs(study, seed_jobs(self.storage, self.sweep.spec))
        t = tally(study.get_trials(deepcopy=False))
        if t["waiting"] == 0:
            return WAIT if t["running"] else None
        trial = self._ask(study)
        frozen = study._storage.get_trial(trial._trial_id)
        if "job" not in frozen.user_attrs:  # another worker popped the job first
            self._give_back(study, trial._trial_id, "surplus")
            return WAIT
        if is_duplicate(study.get_trials(deepcopy=False), frozen):
            self._give_back(study, trial._trial_id, "duplicate")
            return WAIT
        a = frozen.user_attrs
        overrides = json.loads(a["overrides"])
        tags = [
            f"{k.removeprefix('model.')}={v}"
            for k, v in overrides.items()
            if k.startswith("model.")
        ]
        return TrialJob(study, trial, "seed", a["cell"], overrides, seed=int(a["seed"]), tags=tags)

    def _ask(self, study: optuna.Study) -> optuna.Trial:
        """Ask a trial and at once record a heartbeat: a trial without one is never judged stale."""
        trial = study.ask()
        self.current = (study, trial._trial_id)
        self._record_claim(study, trial)  # at once: a worker killed from here on is an orphan
        beating = heartbeats(study._storage)
        if beating is not None:
            beating.record_heartbeat(trial._trial_id)
        return trial

    def _record_claim(self, study: optuna.Study, trial: optuna.Trial) -> None:
        """``workers/<id>.json``: the trial this worker holds, for orphan recovery."""
        records.write_json(
            self.sweep.worker_file(self.worker_id),
            {
                **identity(),  # host, pid, start time: see bench.sweeps.recovery.orphans
                "study": study.study_name,
                "trial_id": trial._trial_id,
                "number": trial.number,
                "started": time.time(),
            },
        )

    def _give_back(self, study: optuna.Study, trial_id: int, status: str) -> None:
        fail_trial(study, trial_id, status, "budget already taken by another worker", retry=False)
        self.current = None

    def _fail_stale(self, study: optuna.Study) -> None:
        """Enqueue retries a crash kept from being enqueued (any storage); RDB: fail (and
        retry) trials whose worker stopped sending heartbeats, or never sent one.

        Optuna's own ``fail_stale_trials`` leaves the trial's attributes saying
        ``running``; this records ``failed`` and why before the state changes.
        """
        storage = study._storage
        requeue_lost_retries(study, self.sweep.spec.retry.max_retries)
        interval = heartbeat_interval(storage)
        beating = heartbeats(storage)
        if beating is None or not interval:
            return
        rdb = getattr(storage, "_backend", storage)  # behind Optuna's cache, when it is there
        grace = getattr(rdb, "grace_period", None) or 2 * interval
        retries = self.sweep.spec.retry.max_retries
        for trial_id in beating._get_stale_trial_ids(study._study_id):
            fail_trial(
                study,
                trial_id,
                "failed",
                f"no heartbeat for over {grace} s: its worker died or lost the storage",
                retries,
            )
        for trial_id in unbeating_trial_ids(storage, study._study_id, ORPHAN_AFTER * grace):
            fail_trial(
                study,
                trial_id,
                "failed",
                "its worker died or lost the storage while asking for it (no heartbeat ever)",
                retries,
            )

    # ------------------------------------------------------------------ loop

    def run(self) -> int:
        """Work until the sweep is done (0) or the worker is interrupted (130)."""
        state_file = self.sweep.worker_file(self.worker_id)
        scratch = state_file.with_suffix(".trial.yaml")
        try:
            while True:
                job = self.claim()
                if job is None or job == WAIT:  # holds no trial (a given-back ask named one)
                    state_file.unlink(missing_ok=True)
                if job is None:
                    scratch.unlink(missing_ok=True)
                    return 0
                if job == WAIT:
                    time.sleep(self.poll)
                    continue
                assert isinstance(job, TrialJob)
                self._record_claim(job.study, job.trial)
                with heartbeat(job.study._storage, job.trial._trial_id):
                    outcome = execute(
                        self.sweep, job, self.label, scratch, self.threads, self.group
                    )
                self.current = None
                state_file.unlink(missing_ok=True)
                if outcome == DISK_FULL:  # its retry waits for room, not for the next claim
                    time.sleep(DISK_FULL_PAUSE)
                if self.group is not None:
                    self.group.wait_trained()  # every rank out of it before the next claim
                if PREEMPTION.requested:  # the signal came as the trial finished
                    raise Preempted(PREEMPTION.signum or signal.SIGTERM)
        except Preempted as e:
            if self.current is not None:
                study, trial_id = self.current
                where = f" at step {e.step}" if e.step is not None else ""
                reason = (
                    f"preempted{where} ({signal.Signals(e.signum).name} to worker {self.label})"
                )
                hold_for_resumption(study, trial_id, reason)
                self.current = None
            state_file.unlink(missing_ok=True)
            self.preempted = e
            return EXIT_PREEMPTED
        except KeyboardInterrupt as e:
            signal.signal(
                signal.SIGINT, signal.SIG_IGN
            )  # a second Ctrl-C must not cut the clean-up
            if self.current is not None and not isinstance(e, Interrupted):
                study, trial_id = self.current
                fail_trial(study, trial_id, "interrupted", "interrupted (Ctrl-C)", retry=None)
            state_file.unlink(missing_ok=True)
            return EXIT_INTERRUPTED


def run_worker(
    spec_path: str,
    storage: str | None = None,
    out: str | None = None,
    worker_id: str | int | None = None,
    *,
    deadline: float | None = None,
    threads: int | None = None,
    check_data: bool = True,
    group: Leader | None = None,
) -> int:
    """Join a sweep as one worker (this process) and work until it is done.

    ``spec_path``: a spec file or a sweep directory; ``storage``: an RDB URL to share
    the sweep across machines (default: the sweep's journal file); ``out``: the
    sweep directory; ``deadline``: epoch seconds after which no trial starts
    (default: now + the spec's wall_clock budget); ``group``: this worker's other
    Slurm tasks, which train each of its trials with it. Returns an exit code.
    """
    quiet_optuna()
    check_numbers(threads=threads, deadline=deadline)
    sweep = prepare_sweep(spec_path, storage=storage, out=out, check_data=check_data)
    wall = sweep.spec.budget.wall_clock
    if deadline is None and wall is not None:
        deadline = time.time() + wall
    if threads:
        import torch

        torch.set_num_threads(threads)
    PREEMPTION.install()  # SIGTERM, SIGUSR1, SIGUSR2: checkpoint, hold the trial, exit
    for note in recover_orphans(sweep):
        print(note, file=sys.stderr)
    worker = Worker(
        sweep, str(worker_id if worker_id is not None else os.getpid()), threads, deadline
    )
    worker.group = group
    return worker.run()


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``bench worker``."""
    p = argparse.ArgumentParser(prog="bench worker", description="Join a sweep as one worker.")
    add_worker_arguments(p)
    return p


def run_from_args(args: argparse.Namespace) -> int:
    """The worker for parsed ``add_worker_arguments`` (``bench worker`` and ``-m``)."""
    follower = ddp_follower()
    if follower is not None:  # Lightning re-ran this command as DDP rank > 0
        return run_ddp_follower(*follower)
    group = None
    if args.ddp_tasks:  # one task of a worker of several: task 0 claims, all train
        layout = TaskLayout.from_slurm()
        if layout.rank > 0:
            return follow(layout)
        group = Leader(layout)
    try:
        return run_worker(
            args.spec,
            args.storage,
            args.out,
            args.worker_id,
            deadline=args.deadline,
            threads=args.threads,
            check_data=not args.prepared,
            group=group,
        )
    finally:
        if group is not None:
            group.close()  # the followers stop too

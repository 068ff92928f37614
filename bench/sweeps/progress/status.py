"""Sweep progress: one row per cell (and the seed phase), as a table or a live display."""

from __future__ import annotations

import shlex
import sys
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from rich.console import Console
from rich.live import Live
from rich.table import Table

from bench.sweeps.layout import Sweep, open_sweep_dir, sweep_or_storage
from bench.sweeps.progress.standing import CellStatus, Problem, problems, sweep_status
from bench.sweeps.storage import check_storage, open_storage
from bench.sweeps.study import (
    latest_by_slot,
    load_study,
    outcome,
    plan,
    seed_study_name,
    seed_values,
    tally,
)

if TYPE_CHECKING:
    from bench.diagnoses import Diagnosis


COLUMNS = ("complete", "running", "waiting", "pruned", "diverged", "failed")


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


COMPACT_BELOW = 120  # terminal columns: narrower, the outcome counts share one column


def status_table(rows: list[CellStatus], title: str = "", width: int | None = None) -> Table:
    """The progress table: per cell, trials by outcome / budget, best value, ETA.

    On a terminal narrower than COMPACT_BELOW columns the six outcome columns
    become one (``3 complete, 2 pruned``), so cell names are not cut to ``nor…``.
    """
    compact = width is not None and width < COMPACT_BELOW
    table = Table(title=title or None)
    counts = ("outcomes",) if compact else COLUMNS
    parts = [len(p) + 1 for r in rows for p in r.cell.split(",")]  # "pos_encoding=learned,"
    for col in ("phase", "cell", "done" if compact else "done/budget", *counts, "best", "eta"):
        left = col in ("phase", "cell", "outcomes")
        table.add_column(
            col,
            justify="left" if left else "right",
            overflow="fold",
            min_width=min(max(parts, default=4), 40) if col == "cell" and compact else None,
        )
    for r in rows:
        t = r.tally
        budget = "?" if r.budget is None else str(r.budget)
        best = "-" if r.best is None else f"{r.best:.4g}"
        if compact:
            shown = [", ".join(f"{t[c]} {c}" for c in COLUMNS if t[c]) or "-"]
        else:
            shown = [str(t[c]) for c in COLUMNS]
        cell = r.cell.replace(",", ", ") if compact else r.cell  # wraps between axes
        table.add_row(r.phase, cell, f"{t.done}/{budget}", *shown, best, _fmt_eta(r.eta))
    return table


class LiveStatus:
    """A rich Live display of the sweep's progress, refreshed by the launcher."""

    def __init__(self, sweep: Sweep, workers: int | None = None) -> None:
        self.sweep, self.workers = sweep, workers
        self.storage = sweep.open_storage()
        self.console = Console()
        self.live = Live(
            self._render(), console=self.console, refresh_per_second=2, transient=False
        )

    def _render(self) -> Table:
        rows = sweep_status(self.storage, self.sweep.spec, self.workers)
        return status_table(rows, self.sweep.spec.name, self.console.width)

    def refresh(self) -> None:
        self.live.update(self._render())

    def __enter__(self) -> LiveStatus:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.live.__exit__(*exc)


class TrialFeed:
    """One plain line per trial as it finishes (output piped): cell, trial, phase, objective, time.

    ``poll`` is called by the launcher on every tick; it reads the storage at most
    every ``every`` seconds. Trials finished before the feed started are not printed.
    """

    def __init__(self, sweep: Sweep, every: float = 2.0, file=None) -> None:
        self.sweep, self.every, self.file = sweep, every, file
        self.storage = sweep.open_storage()
        self.last = 0.0
        self.seen: set[tuple[str, int]] = {key for key, _ in self._finished()}
        seed = f" seed={max(seed_values(sweep.spec), default=0)}" if sweep.spec.seeds else ""
        self.width = max(len(c.key) for c in plan(sweep.spec)) + len(seed)

    def _finished(self):
        from bench.sweeps.study import FINISHED, seed_study_name

        names = [c.study for c in plan(self.sweep.spec)]
        if self.sweep.spec.seeds:
            names.append(seed_study_name(self.sweep.spec))
        for name in names:
            study = optuna.load_study(study_name=name, storage=self.storage)
            for t in study.get_trials(deepcopy=False, states=FINISHED):
                if outcome(t) not in ("surplus", "duplicate"):
                    yield (name, t.number), t

    def poll(self, force: bool = False) -> list[str]:
        """Print (and return) a line for each trial that finished since the last poll."""
        now = time.monotonic()
        if not force and now - self.last < self.every:
            return []
        self.last = now
        lines = []
        for key, t in sorted(
            self._finished(), key=lambda kt: kt[1].datetime_complete or datetime.min
        ):
            if key in self.seen:
                continue
            self.seen.add(key)
            lines.append(trial_line(t, self.sweep.spec.objectives[0].metric, self.width))
        for line in lines:
            print(line, file=self.file or sys.stdout, flush=True)
        return lines


def trial_line(t, metric: str, width: int = 24) -> str:
    """``trial  tune   norm_placement=pre  #3   complete  val/loss=0.0123  41.0s``; a trial
    that did not complete shows its reason instead of a value."""
    a = t.user_attrs
    phase = str(a.get("phase", "?"))
    cell = str(a.get("cell", "?"))
    if "seed" in a and phase == "seed":
        cell += f" seed={a['seed']}"
    o = outcome(t)
    done = t.state == optuna.trial.TrialState.COMPLETE and t.values
    value = f"{metric}={t.values[0]:.4g}" if done else str(a.get("reason", ""))[:70]
    secs = t.duration.total_seconds() if t.duration else None
    took = "-" if secs is None else f"{secs:.1f}s" if secs < 60 else _fmt_eta(secs)
    return f"trial  {phase:<6} {cell:<{width}} #{t.number:<3} {o:<9} {value}  {took}"


def next_steps(sweep: Sweep) -> list[str]:
    """The commands that show a finished sweep: its report and its dashboard."""
    d = shlex.quote(str(sweep.dir))
    return [f"report:    bench report {d}", f"dashboard: bench dashboard {d}"]


def _console() -> Console:
    # Not a terminal (logs, CI): wide enough that cell names are not cut.
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160)


MAX_PROBLEM_ROWS = 20  # the rest are in the report and the storage


def problem_table(problems: list[Problem]) -> Table:
    """Trials that failed, were pruned or diverged, with the reason each one recorded."""
    table = Table(title="trials that did not complete")
    for col in ("phase", "cell", "trial", "outcome", "params", "reason"):
        table.add_column(col, justify="right" if col == "trial" else "left")
    for p in problems[:MAX_PROBLEM_ROWS]:
        params = ", ".join(
            f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
            for k, v in p.params.items()
        )
        table.add_row(p.phase, p.cell, str(p.number), p.outcome, params or "-", p.reason)
    if len(problems) > MAX_PROBLEM_ROWS:
        table.caption = f"{len(problems) - MAX_PROBLEM_ROWS} more not shown"
    return table


def _trial_run_dir(recorded: object, sweep_dir: Path) -> Path | None:
    """A trial's run directory (also after the sweep directory was moved)."""
    if not recorded:
        return None
    p = Path(str(recorded))
    moved = sweep_dir / "runs" / p.name
    return p if p.is_dir() else moved if moved.is_dir() else None


def diagnosed_trials(
    storage: optuna.storages.BaseStorage, sweep: Sweep
) -> list[tuple[str, str, int, str, list[Diagnosis]]]:
    """(phase, cell, trial, outcome, findings) of every finished trial with a diagnosis or
    a watch (trials with a diagnosis first, each group in trial order).

    Read from each run's ``summary.json`` (worked out from its records when it has
    none, e.g. a diverged run): :func:`bench.diagnoses.diagnose_run`.
    """
    from bench.diagnoses import diagnose_run

    names = [(c.key, c.study) for c in plan(sweep.spec)]
    if sweep.spec.seeds:
        names.append(("", seed_study_name(sweep.spec)))
    out = []
    for key, name in names:
        for t in latest_by_slot(load_study(storage, name).get_trials(deepcopy=False)).values():
            o = outcome(t)
            run_dir = _trial_run_dir(t.user_attrs.get("run_dir"), sweep.dir)
            if o in ("running", "waiting") or run_dir is None:
                continue
            found = diagnose_run(run_dir)
            if found:
                cell = key or str(t.user_attrs.get("cell", "?"))
                phase = str(t.user_attrs.get("phase", "seed" if not key else "tune"))
                out.append((phase, cell, t.number, o, found))
    return sorted(out, key=lambda r: all(d.is_watch for d in r[4]))


def diagnosis_table(rows: list[tuple[str, str, int, str, list[Diagnosis]]]) -> Table:
    """Finished trials and what their measurements point to: diagnoses (the run shows a
    symptom; the first one's evidence shown) apart from watches (risks in runs that
    trained fine, no advice)."""
    table = Table(title="diagnoses and watches of finished trials")
    for col in ("phase", "cell", "trial", "outcome", "diagnoses", "watches", "evidence"):
        table.add_column(col, justify="right" if col == "trial" else "left")
    for phase, cell, number, o, found in rows[:MAX_PROBLEM_ROWS]:
        diagnoses = [d for d in found if not d.is_watch]
        watches = [d for d in found if d.is_watch]
        first = (diagnoses or watches)[0]
        table.add_row(
            phase,
            cell,
            str(number),
            o,
            ", ".join(d.title for d in diagnoses) or "–",
            ", ".join(d.title for d in watches) or "–",
            first.evidence if diagnoses else f"(watch) {first.evidence}",
        )
    if len(rows) > MAX_PROBLEM_ROWS:
        table.caption = f"{len(rows) - MAX_PROBLEM_ROWS} more not shown (see bench report)"
    return table


def print_sweep_status(sweep: Sweep, console: Console | None = None) -> None:
    """Print the progress table of a prepared sweep, the trials that did not complete and
    the diagnoses of finished trials."""
    console = console or _console()
    storage = sweep.open_storage()
    rows = sweep_status(storage, sweep.spec)
    width = console.width if console.is_terminal else None
    console.print(status_table(rows, f"{sweep.spec.name} ({sweep.dir})", width))
    workers = slurm_workers_table(sweep.dir)
    if workers is not None:
        console.print(workers)
    found = problems(storage, sweep.spec)
    if found:
        console.print(problem_table(found))
    diagnosed = diagnosed_trials(storage, sweep)
    if diagnosed:
        console.print(diagnosis_table(diagnosed))


def slurm_workers_table(sweep_dir: Path) -> Table | None:
    """The Slurm state of each worker of the sweep's newest job array (None: not on Slurm)."""
    from bench.sweeps.slurm.launcher import read_jobs, worker_rows

    if not read_jobs(sweep_dir):
        return None
    table = Table(title="Slurm workers (newest job array)")
    for col in ("worker", "state", "node / reason", "trial"):
        table.add_column(col)
    for row in worker_rows(sweep_dir):
        table.add_row(*row)
    return table


def storage_rows(url: str) -> list[CellStatus]:
    """Rows for every study in a bare storage (no spec: budgets unknown)."""
    storage = open_storage(url)
    rows = []
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        t = tally(trials)
        phase = (
            "seed" if name.endswith("/seeds") else "search" if name.endswith("/search") else "tune"
        )
        best = None
        if len(study.directions) == 1 and t["complete"]:
            best = float(study.best_value)
        rows.append(CellStatus(name, name.split("/tune/")[-1], phase, None, t, best, None))
    return rows


def print_status(target: str | Path, storage: str | None = None) -> int:
    """Print the progress table of a sweep directory, or of every study in a storage URL."""
    console = _console()
    where = sweep_or_storage(target, journal_file=True)
    if isinstance(where, Path):
        print_sweep_status(open_sweep_dir(where, storage), console)
        return 0
    url = where
    check_storage(url)
    rows = storage_rows(url)
    if not rows:
        console.print(f"{target}: no studies")
        return 0
    by_sweep: dict[str, list[CellStatus]] = defaultdict(list)
    for r in rows:
        by_sweep[r.study.split("/")[0]].append(r)
    for name, group in by_sweep.items():
        console.print(status_table(group, name))
    return 0


__all__ = [
    "LiveStatus",
    "TrialFeed",
    "next_steps",
    "outcome",
    "print_status",
    "print_sweep_status",
    "status_table",
]

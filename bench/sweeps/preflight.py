"""Before a sweep starts: build every cell's data, and ``bench sweep --dry-run``.

The spec check (:func:`bench.sweeps.spec.load_spec`) validates configs; a task
setting can still be impossible only once the data is built (a recall task with
too few symbols for its longest eval length, a max_len shorter than the longest
sequence). :func:`check_cells` runs the same ``prepare`` a run does for every
distinct configuration the sweep can start, so such a mistake is one line and
exit code 2 before any directory or study exists, not a sweep of failed trials.

:func:`dry_run` prints what a sweep would run: its cells, the tuning points,
the number of runs and a rough time estimate from a few timed training steps.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from bench.config import ConfigError, RunConfig
from bench.sweeps import tuning
from bench.sweeps.spec import SweepSpec, build_cell_config

# Seconds a trial spends outside its training steps (process, imports, Trainer, W&B,
# records): measured on the quickstart, 2-core CPU (see the issue 15 notes).
TRIAL_OVERHEAD_S = 4.0
TIMED_STEPS = 5  # training steps timed by --dry-run, after one untimed warm-up step


def _configs(spec: SweepSpec) -> list[tuple[str, RunConfig]]:
    """Each cell's config at every deterministic tuning point (or at its bounds)."""
    space = spec.space
    if space is None:
        values: list[dict[str, Any]] = [{}]
    elif tuning.method(spec) in ("grid", "qmc"):
        values = tuning.points(space, spec.seed)
    else:
        values = [{k: v} for k, p in space.params.items() for v in p.values()]
    out = []
    for key, overrides in spec.cells():
        for point in values:
            where = f"compare cell {key}" + (f" at {point}" if point else "")
            out.append((where, build_cell_config(spec, {**overrides, **point}, where)))
    return out


def check_cells(spec: SweepSpec, source: str = "") -> None:
    """Build the data of every distinct task/model combination; ConfigError on the first bad one."""
    from bench.run import prepare  # torch: only when a sweep is really about to start

    seen: set[str] = set()
    for where, cfg in _configs(spec):
        key = json.dumps([cfg.task.model_dump(mode="json"), cfg.model.model_dump(mode="json")])
        if key in seen:
            continue
        seen.add(key)
        try:
            prepare(cfg)
        except ConfigError as e:
            prefix = f"{source}: " if source else ""
            raise ConfigError(f"{prefix}{where}: {e}") from None


@dataclass(frozen=True)
class Plan:
    """What a sweep would run."""

    cells: list[str]
    tuning: dict[str, Any]
    tune_runs: int
    seed_runs: int
    step_seconds: float
    max_steps: int

    @property
    def runs(self) -> int:
        return self.tune_runs + self.seed_runs

    def estimate(self, workers: int) -> float:
        """Rough wall time in seconds: runs x (steps x step time + overhead) / workers."""
        per_run = self.max_steps * self.step_seconds + TRIAL_OVERHEAD_S
        return per_run * self.runs / max(workers, 1)


def time_steps(cfg: RunConfig, threads: int) -> float:
    """Mean seconds per training step of ``cfg`` (forward, backward, AdamW) on this machine."""
    import torch

    from bench.lit import BenchModule
    from bench.run import prepare

    prep = prepare(cfg)
    torch.set_num_threads(max(threads, 1))
    module = BenchModule(prep.cfg, prep.datamodule.eval_lengths)
    opt = torch.optim.AdamW(module.parameters(), lr=prep.cfg.train.lr)
    batch = next(iter(prep.datamodule.train_dataloader()))
    times = []
    for i in range(TIMED_STEPS + 1):
        start = time.perf_counter()
        loss = module.compute_loss(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def make_plan(spec: SweepSpec, threads: int) -> Plan:
    """Cells, tuning and run counts of ``spec``, with one cell's step time measured."""
    cells = [key for key, _ in spec.cells()]
    budget = spec.trials_per_cell()
    if spec.search is not None and spec.budget.trials is not None:
        budget = min(budget, spec.budget.trials)
    cfg = build_cell_config(spec, spec.cells()[0][1], "base")
    return Plan(
        cells=cells,
        tuning=tuning.describe(spec),
        tune_runs=budget * len(cells),
        seed_runs=spec.seeds * len(cells),
        step_seconds=time_steps(cfg, threads),
        max_steps=cfg.train.max_steps,
    )


def print_plan(spec: SweepSpec, plan: Plan, workers: int) -> None:
    """The dry-run listing: cells, tuning points, runs, estimated time."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{spec.name}: dry run (nothing is started)")
    table.add_column("cell")
    table.add_column("tuning runs", justify="right")
    table.add_column("seed runs", justify="right")
    per_cell = plan.tune_runs // max(len(plan.cells), 1)
    for cell in plan.cells:
        table.add_row(cell, str(per_cell), str(spec.seeds))
    console.print(table)
    console.print(f"tuning: {plan.tuning['description']}")
    for i, point in enumerate(plan.tuning.get("values", [])):
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()
        )
        console.print(f"  point {i}: {shown}")
    console.print(f"pruner: {spec.effective_pruner}; seeds per cell: {spec.seeds}")
    est = plan.estimate(workers)
    console.print(
        f"{plan.runs} runs of {plan.max_steps} steps; one step takes {plan.step_seconds * 1e3:.1f} ms "
        f"here, so about {est / 60:.1f} min with {workers} worker(s) "
        f"(rough: assumes {TRIAL_OVERHEAD_S:.0f} s per run outside training and no pruning)"
    )

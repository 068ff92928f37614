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

# Costs outside the timed training steps, in units of one training step of the cell,
# measured on the quickstart (d_model 32, 2 layers, reverse, 2-core CPU, 2 workers):
# a run of 400 steps took 14-16 s in train_run against 2 s of bare steps.
TRIAL_OVERHEAD_S = 4.0  # per run: Trainer, W&B offline run, records, checkpoint
VALIDATION_STEPS = 3.0  # one validation of one eval length ~ 3 training steps
HESSIAN_STEPS_PER_ITER = 6.0  # one Lanczos iteration (HVP in fp32, double backward)
LANDSCAPE_STEPS_PER_POINT = 0.8  # one landscape grid point (forward only, batched)
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
    from bench.training.prepare import prepare  # torch: only when a sweep is really about to start

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
class RungPlan:
    """The cells of one model size (the whole sweep without a ladder) and what a run costs."""

    name: str  # "d_model=64, n_heads=4"; "" without a ladder
    cells: list[str]
    step_seconds: float
    max_steps: int
    extra_steps: float = 0.0  # validation and diagnostics of one run, in training steps
    params: int = 0
    runs: int = 0  # tuning and seed runs of the rung's cells

    def run_seconds(self) -> float:
        return (self.max_steps + self.extra_steps) * self.step_seconds + TRIAL_OVERHEAD_S


@dataclass(frozen=True)
class Plan:
    """What a sweep would run."""

    cells: list[str]
    tuning: dict[str, Any]
    tune_runs: int
    seed_runs: int
    rungs: list[RungPlan]

    @property
    def runs(self) -> int:
        return self.tune_runs + self.seed_runs

    @property
    def runs_per_cell(self) -> float:
        return self.runs / max(len(self.cells), 1)

    def estimate(self, workers: int) -> float:
        """Rough wall time in seconds: per rung, runs x (steps + extra) x its step time +
        overhead; summed and divided by the workers."""
        return sum(r.run_seconds() * r.runs for r in self.rungs) / max(workers, 1)


def extra_steps(cfg: RunConfig) -> float:
    """Validation and diagnostics of one run of ``cfg``, in training-step equivalents."""
    t, d = cfg.train, cfg.diagnostics
    extra = (t.max_steps // t.val_every + 1) * len(cfg.task.eval_scales) * VALIDATION_STEPS
    if d.hessian.enabled:
        extra += len(d.hessian.steps) * d.hessian.iters * HESSIAN_STEPS_PER_ITER
    if d.landscape.enabled:
        extra += 2 * d.landscape.resolution**2 * LANDSCAPE_STEPS_PER_POINT  # random + PCA planes
    return extra


def time_steps(cfg: RunConfig, threads: int) -> float:
    """Mean seconds per training step of ``cfg`` (forward, backward, AdamW) on this machine."""
    import torch

    from bench.tasks.base import BenchDataModule
    from bench.training.module import BenchModule
    from bench.training.prepare import prepare

    prep = prepare(cfg)
    dm = prep.datamodule
    assert isinstance(dm, BenchDataModule)  # prepare builds the task's data module
    torch.set_num_threads(max(threads, 1))
    module = BenchModule(prep.cfg, dm.eval_lengths)
    opt = torch.optim.AdamW(module.parameters(), lr=prep.cfg.train.lr)
    batch = next(iter(dm.train_dataloader()))
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
    """Cells, tuning and run counts of ``spec``, with one cell's step time measured per rung."""
    from bench.training.resources import count_params

    cells = spec.cells()
    budget = spec.trials_per_cell()
    if spec.search is not None and spec.budget.trials is not None:
        budget = min(budget, spec.budget.trials)
    source = spec.tuning_source()
    tuned = sum(source[k] == k for k, _ in cells)
    by_rung: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for key, overrides in cells:
        rung = ", ".join(f"{k.removeprefix('model.')}={overrides[k]}" for k in spec.ladder_keys)
        by_rung.setdefault(rung, []).append((key, overrides))
    rungs = []
    for name, members in by_rung.items():
        cfg = build_cell_config(spec, members[0][1], "base")
        rungs.append(
            RungPlan(
                name=name,
                cells=[k for k, _ in members],
                step_seconds=time_steps(cfg, threads),
                max_steps=cfg.train.max_steps,
                extra_steps=extra_steps(cfg),
                params=count_params(cfg),
                runs=sum(budget * (source[k] == k) + (spec.seeds or 0) for k, _ in members),
            )
        )
    return Plan(
        cells=[k for k, _ in cells],
        tuning=tuning.describe(spec),
        tune_runs=budget * tuned,
        seed_runs=(spec.seeds or 0) * len(cells),
        rungs=rungs,
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
    source = spec.tuning_source()
    per_cell = plan.tune_runs // max(sum(source[c] == c for c in plan.cells), 1)
    for cell in plan.cells:
        tuned = str(per_cell) if source[cell] == cell else "0, transferred"
        table.add_row(cell, tuned, str(spec.seeds))
    console.print(table)
    print(f"tuning: {plan.tuning['description']}")
    for i, point in enumerate(plan.tuning.get("values", [])):
        shown = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items()
        )
        print(f"  point {i}: {shown}")
    print(f"pruner: {spec.effective_pruner}; seeds per cell: {spec.seeds}")
    est = plan.estimate(workers)
    if spec.scale is not None:
        where = "every rung" if spec.scale.tune == "every" else "the smallest rung only"
        print(f"size ladder: {len(plan.rungs)} rungs x {len(plan.rungs[0].cells)} cells; "
              f"tuned at {where}; budget: {spec.scale.budget}")  # fmt: skip
        for r in plan.rungs:
            each = r.run_seconds() * r.runs / max(workers, 1)
            print(f"  {r.name}: about {r.params:,} parameters, {r.runs} runs of {r.max_steps} steps, "
                  f"{r.step_seconds * 1e3:.1f} ms a step here, about {each / 60:.1f} min")  # fmt: skip
    first = plan.rungs[0]
    steps = (
        f"{first.max_steps} steps; one step takes {first.step_seconds * 1e3:.1f} ms here"
        if len(plan.rungs) == 1
        else "the steps and step times above"
    )
    print(
        f"{plan.runs} runs of {steps}, so about {est / 60:.1f} min with {workers} worker(s) "
        f"(rough: validation and diagnostics count as {first.extra_steps:.0f} more steps a run, "
        f"plus {TRIAL_OVERHEAD_S:.0f} s per run; no pruning)"
    )

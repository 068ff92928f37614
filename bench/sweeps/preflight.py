"""Before a sweep starts: build every cell's data, and ``bench sweep --dry-run``.

The spec check (:func:`bench.sweeps.spec.load_spec`) validates configs; a task
setting can still be impossible only once the data is built (a recall task with
too few symbols for its longest eval length, a max_len shorter than the longest
sequence). :func:`check_cells` runs the same checks a run does (``check_data``; the
precision, whose ``auto`` measures bf16 per shape, is each worker's) for every
distinct configuration the sweep can start, so such a mistake is one line and
exit code 2 before any directory or study exists, not a sweep of failed trials.

:func:`dry_run` prints what a sweep would run: its cells, the tuning points,
the number of runs and a rough time estimate from a few timed training steps.
"""

from __future__ import annotations

import itertools
import json
import statistics
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
HESSIAN_WITHOUT_DENSITY = 0.4  # the density's quadrature is 120 of a measurement's ~200 HVPs
LANDSCAPE_STEPS_PER_POINT = 0.8  # one landscape grid point (forward only, batched)
WARMUP_STEPS = 3  # untimed first steps (allocations, autograd's first graph, lazy init)
TIMED_STEPS = 10  # then timed one by one: the estimate uses their median


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
    # torch: only when a sweep is really about to start
    from bench.training.prepare import check_data

    seen: set[str] = set()
    for where, cfg in _configs(spec):
        key = json.dumps([cfg.task.model_dump(mode="json"), cfg.model.model_dump(mode="json")])
        if key in seen:
            continue
        seen.add(key)
        try:
            check_data(cfg)  # the precision is each worker's to resolve (bench.training.precision)
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
    extra_steps: float = 0.0  # validation and diagnostics of one tuning run, in training steps
    params: int = 0
    seed_extra_steps: float | None = None  # the same for a seed run (None: as a tuning run's)
    tune_runs: int = 0  # tuning runs of the rung's cells (none at a transferred rung)
    seed_runs: int = 0

    def run_seconds(self, phase: str = "tune") -> float:
        """Estimated seconds of one run of ``phase`` (``tune`` or ``seed``): its steps, its
        validation and diagnostics in step equivalents, and the per-run overhead."""
        extra = self.extra_steps
        if phase == "seed" and self.seed_extra_steps is not None:
            extra = self.seed_extra_steps
        return (self.max_steps + extra) * self.step_seconds + TRIAL_OVERHEAD_S

    @property
    def runs(self) -> int:
        return self.tune_runs + self.seed_runs

    def seconds(self) -> float:
        """One worker's seconds for every run of the rung."""
        return self.tune_runs * self.run_seconds("tune") + self.seed_runs * self.run_seconds("seed")


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

    def estimate(self, workers: int) -> float:
        """Rough wall time in seconds: per rung, runs x (steps + extra) x its step time +
        overhead, tuning and seed runs each with their own diagnostics (``phases``);
        summed and divided by the workers."""
        return sum(r.seconds() for r in self.rungs) / max(workers, 1)


def extra_steps(cfg: RunConfig) -> float:
    """Validation and diagnostics of one run of ``cfg``, in training-step equivalents."""
    t, d = cfg.train, cfg.diagnostics
    extra = (t.max_steps // t.val_every + 1) * len(cfg.task.eval_scales) * VALIDATION_STEPS
    if d.hessian.enabled:
        share = 1.0 if d.hessian.density else HESSIAN_WITHOUT_DENSITY
        extra += len(d.hessian.steps) * d.hessian.iters * HESSIAN_STEPS_PER_ITER * share
    if d.landscape.enabled:
        extra += 2 * d.landscape.resolution**2 * LANDSCAPE_STEPS_PER_POINT  # random + PCA planes
    return extra


def _now() -> float:
    """The clock of :func:`time_steps` (one place, so a test can script it)."""
    return time.perf_counter()


def time_steps(cfg: RunConfig, threads: int) -> float:
    """Seconds per training step of ``cfg`` (forward, backward, AdamW) on this machine, with
    ``threads`` torch threads: the median of :data:`TIMED_STEPS` steps after
    :data:`WARMUP_STEPS` untimed ones (the first steps pay one-time costs, and one slow
    step on a shared machine moves a median little)."""
    import torch

    from bench.tasks.base import BenchDataModule
    from bench.training.module import BenchModule
    from bench.training.prepare import check_data

    prep = check_data(cfg)  # timed in float32, whatever train.precision resolves to
    dm = prep.datamodule
    assert isinstance(dm, BenchDataModule)  # prepare builds the task's data module
    torch.set_num_threads(max(threads, 1))
    module = BenchModule(prep.cfg, dm.eval_lengths)
    opt = torch.optim.AdamW(module.parameters(), lr=prep.cfg.train.lr)
    batches = itertools.chain.from_iterable(itertools.repeat(dm.train_dataloader()))
    times = []
    for i, batch in zip(range(WARMUP_STEPS + TIMED_STEPS), batches, strict=False):
        start = _now()
        loss = module.compute_loss(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        elapsed = _now() - start
        if i >= WARMUP_STEPS:
            times.append(elapsed)
    return statistics.median(times)


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
        cfg = build_cell_config(spec, members[0][1], "base", phase="tune")
        seed_cfg = build_cell_config(spec, members[0][1], "base", phase="seed")
        rungs.append(
            RungPlan(
                name=name,
                cells=[k for k, _ in members],
                step_seconds=time_steps(cfg, threads),
                max_steps=cfg.train.max_steps,
                extra_steps=extra_steps(cfg),
                params=count_params(cfg),
                seed_extra_steps=extra_steps(seed_cfg),
                tune_runs=sum(budget * (source[k] == k) for k, _ in members),
                seed_runs=(spec.seeds or 0) * len(members),
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
            each = r.seconds() / max(workers, 1)
            print(f"  {r.name}: about {r.params:,} parameters, {r.runs} runs of {r.max_steps} steps, "
                  f"{r.step_seconds * 1e3:.1f} ms a step here, about {each / 60:.1f} min")  # fmt: skip
    first = plan.rungs[0]
    steps = (
        f"{first.max_steps} steps; one step takes {first.step_seconds * 1e3:.1f} ms here"
        if len(plan.rungs) == 1
        else "the steps and step times above"
    )
    extra = f"{first.extra_steps:.0f}"
    if first.seed_extra_steps is not None and round(first.seed_extra_steps) != round(
        first.extra_steps
    ):
        extra = f"{first.extra_steps:.0f} (tuning) or {first.seed_extra_steps:.0f} (seed runs)"
    print(
        f"{plan.runs} runs of {steps}, so about {est / 60:.1f} min with {workers} worker(s) "
        f"(rough: validation and diagnostics count as {extra} more steps a run, "
        f"plus {TRIAL_OVERHEAD_S:.0f} s per run; no pruning)"
    )
    if (busy := _busy()) is not None:
        print(busy)


def _busy() -> str | None:
    """A warning when other processes share the cores the step time was measured on."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if not cores or load <= cores:
        return None
    return (f"note: the load average is {load:.1f} on {cores} cores: other processes share "
            "them, so this step time (and the estimate) is slower than on a quiet machine")  # fmt: skip

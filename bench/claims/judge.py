"""Judging one claim from its sweep's records: the verdict, samples, figures, what ran.

:func:`judge_claim` reads a claim's sweep (:func:`bench.report.collect.load_sweep`),
turns each metric into one number per run (:mod:`bench.claims.metrics`), applies
the claim's rules (:mod:`bench.claims.rules`) unless its file changed after its runs
launched (:mod:`bench.claims.prereg`), and draws its figures. The report
(:mod:`bench.claims.report`) lays out the results; ``bench reproduce``
(:mod:`bench.claims.reproduce`) runs the sweeps first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.claims import spec as cspec
from bench.claims.metrics import Samples
from bench.claims.prereg import Registration
from bench.claims.rules import Verdict
from bench.config import ConfigError

if TYPE_CHECKING:
    from bench.claims.sizes import SizeResult
    from bench.report.collect import SweepData
    from bench.sweeps.spec import SweepSpec

TIMING = "timing.json"  # seconds each claim's sweep ran, summed over invocations


@dataclass
class ClaimResult:
    """A judged claim: its verdict, samples, figures and what was run."""

    claim: cspec.ClaimSpec
    sweep_dir: Path
    verdict: Verdict | None = None
    samples: dict[str, Samples] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    ran: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    not_drawn: list[str] = field(default_factory=list)  # figures without data, and why
    seconds: float | None = None
    error: str = ""
    registration: Registration | None = None
    sizes: SizeResult | None = None  # each rung's verdict and each test's trend (a ladder)


def judge_claim(claim: cspec.ClaimSpec, root: Path, fig_dir: Path, storage: str | None):
    """Load the claim's sweep and judge it; a sweep that cannot be read is an error row."""
    from bench.claims import figures, rules
    from bench.claims.metrics import run_samples
    from bench.claims.prereg import check_registration
    from bench.report.collect import load_sweep

    result = ClaimResult(claim, root / claim.sweep_id)
    result.seconds = read_timing(root).get(claim.sweep_id)
    result.registration = check_registration(claim, result.sweep_dir)
    try:
        data = load_sweep(result.sweep_dir, storage)
    except ConfigError as e:
        result.error = str(e)
        return result
    result.samples = {name: run_samples(data, name, m) for name, m in claim.metrics.items()}
    problem = result.registration.problem
    if problem is not None:  # not judged on runs launched with another file
        result.verdict = Verdict(rules.INCONCLUSIVE, problem, [], [])
    elif data.ladder:
        from bench.claims.sizes import judge_sizes, rung_sizes

        counted = [r for r in data.rows if r["status"] == "completed"]
        result.verdict, result.sizes = judge_sizes(
            claim, result.samples, data.ladder, rung_sizes(counted, data.ladder)
        )
    else:
        result.verdict = rules.judge(claim, result.samples)
    result.ran = what_was_run(data.spec, data)
    for name, s in result.samples.items():
        result.notes += [f"{name}: {n}" for n in s.notes]
    for i, fs in enumerate(claim.figures):
        path = fig_dir / f"{claim.id}-{i}-{fs.kind}.png"
        drawn = figures.draw(fs, result.samples[fs.metric], claim.metrics[fs.metric], data, path)
        if drawn is not None:
            result.figures.append(drawn)
        else:
            m = claim.metrics[fs.metric]
            result.not_drawn.append(f"{m.label or fs.metric}: no run recorded {m.key}")
    return result


def what_was_run(spec: SweepSpec, data: SweepData) -> list[tuple[str, str]]:
    """The sweep in a few labelled lines: task, model, cells, tuning, seeds, steps, runs."""
    task, model = spec.base.get("task") or {}, spec.base.get("model") or {}
    train = spec.base.get("train") or {}
    tune = spec.tune
    if tune is not None:
        params = ", ".join(
            f"{k} {', '.join(map(str, p.choices or []))}"
            if p.kind == "categorical"
            else f"{k} {p.low}..{p.high}"
            for k, p in tune.params.items()
        )
        tuning = f"{params}: {tune.trials} trials per cell, same points in every cell"
    elif "train.lr" in (spec.compare or {}):
        tuning = "none: train.lr is a compared axis"
    else:
        tuning = f"none: train.lr {train.get('lr', 'default')} in every cell"
    cells = "; ".join(f"{k} = {', '.join(map(str, v))}" for k, v in (spec.compare or {}).items())
    if spec.scale is not None:
        rungs = "; ".join(", ".join(f"{k}={v}" for k, v in r.items()) for r in spec.scale.rungs())
        cells += f"; at every size: {rungs}"
    counted = sum(1 for r in data.rows if r["status"] == "completed")
    return [
        ("task", ", ".join(f"{k} {v}" for k, v in task.items())),
        ("model", ", ".join(f"{k} {v}" for k, v in model.items())),
        ("cells", cells),
        ("tuning", tuning),
        ("seeds", _seeds_text(spec.seeds, tune is not None, spec.seed_data)),
        ("steps", str(spec.budget.max_steps or train.get("max_steps"))),
        ("runs", f"{len(data.rows)} trials, {counted} completed"),
    ]


def _seeds_text(seeds: Any, tuned: bool, seed_data: bool) -> str:
    data = "; each run draws its own task data (task.seed)" if seed_data else ""
    if tuned:
        return f"{seeds} fresh seeds per cell, re-running its best tuning configuration{data}"
    runs = int(seeds or 0) + 1
    return f"{seeds} seed runs per cell plus its single run (nothing tuned): {runs} runs{data}"


def read_timing(root: Path) -> dict[str, float]:
    """Seconds each claim's sweep under ``root`` has run so far (empty when none is recorded)."""
    try:
        return {k: float(v) for k, v in json.loads((root / TIMING).read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}

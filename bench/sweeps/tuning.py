"""Fair tuning in compare mode: deterministic start-up points, then TPE.

A comparison is only as fair as the tuning of its weakest cell. Optuna's TPE
spends its first ``n_startup_trials`` on random draws, so a cell tuned with 3
TPE trials was never tuned at all: three random learning rates, different for
every cell. The ``auto`` sampler therefore gives every cell the *same*
deterministic points first, covering the searched range:

- one parameter: a grid, log-spaced for a ``log: true`` range (geometric), evenly
  spaced otherwise; categorical parameters list every choice;
- two or more: scrambled Halton quasi-random points (Owen 2017), the same for
  every cell (seeded by the spec's ``seed``), which cover a box far more evenly
  than random draws.

Trials beyond these points are proposed by TPE (Bergstra et al. 2011), which
then starts from the points as its history instead of from random draws. The
points are enqueued into each cell's study when the sweep is prepared, so every
worker (on any machine) runs exactly these points, each once.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bench.config import build_run_config
from bench.sweeps.spec import ParamSpec, SweepSpec, TuneSpec, run_config_overrides

DEFAULT_POINTS = 5  # the floor: a 5-point grid spans 1e-3..3e-2 in 2.3x steps


def n_points(space: TuneSpec) -> int:
    """How many deterministic points the ``auto`` sampler runs before TPE takes over."""
    if space.points is not None:
        return space.points
    return min(space.trials, DEFAULT_POINTS)


def _axis(p: ParamSpec, u: np.ndarray) -> list[Any]:
    """Map unit-interval coordinates ``u`` onto one parameter's range."""
    if p.kind == "categorical":
        choices = list(p.choices or [])
        return [choices[min(int(x * len(choices)), len(choices) - 1)] for x in u]
    lo, hi = float(p.low), float(p.high)  # type: ignore[arg-type]
    span = (math.log(lo), math.log(hi)) if p.log else (lo, hi)
    vals = span[0] + u * (span[1] - span[0])
    vals = np.exp(vals) if p.log else vals
    if p.kind == "int":
        return [round(float(v)) for v in vals]
    if p.step is not None:
        return [lo + round((v - lo) / p.step) * p.step for v in vals]
    return [float(f"{v:.6g}") for v in vals]  # readable in tables; well inside float precision


def points(space: TuneSpec, seed: int = 0) -> list[dict[str, Any]]:
    """The deterministic tuning points of a space (duplicates removed, order kept)."""
    n = n_points(space)
    names = list(space.params)
    if len(names) == 1:
        p = space.params[names[0]]
        if p.kind == "categorical":
            values = list(p.choices or [])[: max(n, len(p.choices or []))]
        else:
            u = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
            values = _axis(p, u)
        pts = [{names[0]: v} for v in values]
    else:
        from scipy.stats import qmc

        u = qmc.Halton(d=len(names), scramble=True, seed=seed).random(n)
        columns = [_axis(space.params[k], u[:, i]) for i, k in enumerate(names)]
        pts = [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)]
    unique: list[dict[str, Any]] = []
    for pt in pts:
        if pt not in unique:
            unique.append(pt)
    return unique


def method(spec: SweepSpec) -> str:
    """The tuning method in effect: ``grid``, ``qmc``, ``tpe``, ``random`` or ``none``."""
    space = spec.space
    if space is None:
        return "none"
    if space.sampler != "auto":
        return space.sampler
    if spec.search is not None:
        return "tpe"
    return "grid" if len(space.params) == 1 else "qmc"


def transfer_note(spec: SweepSpec) -> str:
    """What a ladder tuned only at its smallest rung does at the others ("" otherwise)."""
    if spec.scale is None or spec.scale.tune == "every":
        return ""
    smallest = ", ".join(
        f"{k.removeprefix('model.')}={v}" for k, v in spec.scale.rungs()[0].items()
    )
    param = build_run_config(overrides=run_config_overrides(spec)).train.parameterization
    why = (
        "µP is meant to keep the best learning rate in place across widths"
        if param == "mup"
        else "under standard parameterization the best learning rate moves with width, "
        "so a larger rung may be mis-tuned (docs/mup.md)"
    )
    return (
        f"; tuned at the smallest rung only ({smallest}): every larger rung re-runs its "
        f"cell's best setting from there, with the seeds ({param} parameterization: {why})"
    )


def describe(spec: SweepSpec) -> dict[str, Any]:
    """What ``sweep.json`` and the report say about the tuning of each cell."""
    space = spec.space
    how = method(spec)
    if space is None:
        return {"method": how, "points": 0, "trials": 1, "description": "no tuned parameters"}
    if how not in ("grid", "qmc"):
        what = {"tpe": "TPE (random start-up trials first)", "random": "random sampling"}
        text = f"{space.trials} trials per cell by {what.get(how, how)}" + transfer_note(spec)
        return {"method": how, "points": 0, "trials": space.trials, "description": text}
    pts = points(space, spec.seed)
    kind = (
        "a log-spaced grid"
        if how == "grid" and any(p.log for p in space.params.values())
        else "an evenly spaced grid"
        if how == "grid"
        else "scrambled Halton quasi-random points"
    )
    extra = space.trials - len(pts)
    text = f"every cell runs the same {len(pts)} points ({kind} over {', '.join(space.params)})"
    text += f", then {extra} TPE trials" if extra > 0 else ""
    text += transfer_note(spec)
    return {
        "method": how,
        "points": len(pts),
        "trials": space.trials,
        "values": pts,
        "description": text,
    }

"""What every trial carries so that optuna-dashboard can tell cells apart and compare them.

- User attributes, on the trials of both phases: each compared axis under its
  short name (``norm_placement: "post"``), beside ``cell`` and ``phase``; a seed
  run also gets the tuned values it re-runs (``train.lr``). optuna-dashboard
  shows them as ``UserAttribute ...`` columns of the trial table.
- Parameters, on the seed study's trials: the axes and the tuned values, with
  the spec's distributions (an axis is categorical over its compared values).
  The seed study then holds every cell, so its Slice, Parallel Coordinate,
  Rank and Hyperparameter Importance plots compare cells directly. Tuning
  trials keep only their tuned parameters (one study per cell: the axes would
  be constant there, and a sampler must not see them as a search space).

Nothing here may fail a trial: a storage that refuses a parameter (e.g. an
axis that gained values since earlier seed runs) only loses that parameter.
"""

from __future__ import annotations

import contextlib
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from bench.sweeps.spec import ParamSpec, SweepSpec


def axis_attrs(spec: SweepSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"norm_placement": "post", ...}`` for the compared axes, plus the tuned values given."""
    out = {k.removeprefix("model."): v for k, v in overrides.items() if k in (spec.compare or {})}
    space = spec.space.params if spec.space is not None else {}
    out.update({k: v for k, v in overrides.items() if k in space})
    return out


def _distribution(p: ParamSpec) -> BaseDistribution:
    if p.kind == "categorical":
        return CategoricalDistribution(list(p.choices or []))
    low, high = p.bounds
    if p.kind == "int":
        return IntDistribution(int(low), int(high), log=p.log, step=int(p.step or 1))
    return FloatDistribution(low, high, log=p.log, step=p.step)


def cell_distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """Parameter name -> distribution: compared axes (categorical), then tuned parameters."""
    out: dict[str, BaseDistribution] = {
        k: CategoricalDistribution(list(v)) for k, v in (spec.compare or {}).items()
    }
    if spec.space is not None:
        out.update({k: _distribution(p) for k, p in spec.space.params.items()})
    return out


def set_seed_params(trial: optuna.Trial, spec: SweepSpec, overrides: dict[str, Any]) -> list[str]:
    """Record a seed run's fixed configuration as the trial's parameters; returns their names."""
    storage, trial_id = trial.study._storage, trial._trial_id
    done = []
    for name, dist in cell_distributions(spec).items():
        if name not in overrides:
            continue
        with contextlib.suppress(ValueError, TypeError):  # outside the distribution, or refused
            storage.set_trial_param(trial_id, name, dist.to_internal_repr(overrides[name]), dist)
            done.append(name)
    return done

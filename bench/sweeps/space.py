"""Search space -> Optuna: suggest a trial's parameters; samplers and pruners by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import optuna

from bench.sweeps.spec import ParamSpec, SweepSpec, TuneSpec


def _suggest_float(trial: optuna.Trial, name: str, p: ParamSpec) -> float:
    low, high = p.bounds
    return trial.suggest_float(name, low, high, log=p.log, step=p.step)


def _suggest_int(trial: optuna.Trial, name: str, p: ParamSpec) -> int:
    low, high = p.bounds
    return trial.suggest_int(name, int(low), int(high), step=int(p.step or 1), log=p.log)


def _suggest_categorical(trial: optuna.Trial, name: str, p: ParamSpec) -> Any:
    return trial.suggest_categorical(name, list(p.choices or []))


SUGGEST: dict[str, Callable[[optuna.Trial, str, ParamSpec], Any]] = {
    "float": _suggest_float,
    "int": _suggest_int,
    "categorical": _suggest_categorical,
}


def suggest(trial: optuna.Trial, space: TuneSpec | None) -> dict[str, Any]:
    """The trial's parameters as dotted RunConfig overrides (``{"train.lr": 0.003}``)."""
    if space is None:
        return {}
    return {name: SUGGEST[p.kind](trial, name, p) for name, p in space.params.items()}


def grid_space(space: TuneSpec | None) -> dict[str, list[Any]]:
    """The explicit grid of every parameter (validated to exist for the grid sampler)."""
    return {name: p.grid() or [] for name, p in (space.params if space else {}).items()}


class BudgetedGridSampler(optuna.samplers.GridSampler):
    """A grid sampler that leaves stopping to the sweep's budget.

    Optuna's GridSampler calls ``study.stop()`` when the grid is used up, which only
    works inside ``study.optimize``; our workers use ask/tell and stop on the budget
    (at most the grid size, see ``SweepSpec.trials_per_cell``).
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Sequence[float] | None,
    ) -> None:
        return None


SAMPLERS: dict[str, Callable[[TuneSpec | None, int], optuna.samplers.BaseSampler]] = {
    # constant_liar: parallel workers see running trials as bad, so they spread out.
    "tpe": lambda space, seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
    "random": lambda space, seed: optuna.samplers.RandomSampler(seed=seed),
    "grid": lambda space, seed: BudgetedGridSampler(grid_space(space), seed=seed),
}


def _auto(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    """TPE that starts from the enqueued deterministic points instead of random draws."""
    from bench.sweeps import tuning

    startup = len(tuning.points(spec.space, spec.seed)) if tuning.method(spec) != "tpe" else 10  # type: ignore[arg-type]
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True, n_startup_trials=startup)


# Samplers whose order is fixed by the seed: every worker must use the same seed, or
# workers map the same grid index to different points (repeats and gaps).
SHARED_SEED = frozenset({"grid"})


def make_sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    """The spec's sampler; ``seed`` differs per worker so workers do not propose twins."""
    space = spec.space
    if space is None:
        return optuna.samplers.RandomSampler(seed=seed)  # no parameters: nothing to sample
    if space.sampler == "auto":
        return _auto(spec, seed)
    return SAMPLERS[space.sampler](space, seed)


def _hyperband(steps: int, every: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.HyperbandPruner(
        min_resource=every, max_resource=steps, reduction_factor=3
    )


def _median(steps: int, every: int) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=every)


PRUNERS: dict[str, Callable[[int, int], optuna.pruners.BasePruner]] = {
    # chance: never relative to other trials; the trial's own callback stops it when
    # its loss is still above the task's chance level (bench.sweeps.objective).
    "chance": lambda steps, every: optuna.pruners.NopPruner(),
    "hyperband": _hyperband,
    "median": _median,
    "none": lambda steps, every: optuna.pruners.NopPruner(),
}


def make_pruner(spec: SweepSpec, max_steps: int, val_every: int) -> optuna.pruners.BasePruner:
    """The spec's pruner, with resources in training steps (reports happen at validations)."""
    return PRUNERS[spec.effective_pruner](max_steps, min(val_every, max_steps))

"""The sweep spec: a typed, validated YAML file (``sweeps/*.yaml``).

A spec names a base run config, either ``compare`` axes (every combination is a
cell, tuned separately with ``tune``) or one ``search`` over architecture and
hyperparameters together, plus seeds, objective(s), budgets, sampler and pruner.
Unknown keys are errors. :func:`load_spec` validates everything, including
every cell's RunConfig, before anything is created on disk or in a storage.
"""

from __future__ import annotations

import itertools
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from bench.config import ConfigError, build_run_config, flatten, load_yaml
from bench.extras import check_run_config
from bench.validation import describe

Scalar = str | int | float | bool | None

DEFAULT_SEEDS = 3  # fewer than 3 runs per side and the report prints no significance verdict
# Pruners that judge a trial against other trials' early curves; in compare mode those
# are other learning rates, so the pruner (not the training) would decide the comparison.
RELATIVE_PRUNERS = ("hyperband", "median")
# Validation context of a spec a sweep directory recorded (see parse_spec).
RECORDED = "recorded"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ParamSpec(_Strict):
    """One tuned dimension: a float/int range (``low``/``high``, ``log``, ``step``) or ``choices``."""

    type: Literal["float", "int", "categorical"] | None = Field(
        None,
        description="None: inferred (choices: categorical; integer bounds, no log: int; else float)",
    )
    low: float | None = Field(None, description="a range's lower bound")
    high: float | None = Field(None, description="a range's upper bound")
    log: bool = Field(False, description="sample the range on a log scale")
    step: float | None = Field(None, gt=0, description="a range's step (grid sampler)")
    choices: list[Scalar] | None = Field(
        None, description="the values to choose from (a bare list is short for this)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ParamSpec:
        kind = self.kind
        if kind == "categorical":
            if not self.choices:
                raise ValueError("choices: empty; give at least one value")
            if self.low is not None or self.high is not None:
                raise ValueError("give either choices or low/high, not both")
            return self
        if self.low is None or self.high is None:
            raise ValueError("a range needs both low and high (or give choices)")
        if self.low > self.high:
            raise ValueError(f"low={self.low:g} > high={self.high:g}")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0, got low={self.low:g}")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if kind == "int" and not all(float(v).is_integer() for v in (self.low, self.high)):
            raise ValueError("an int range needs integer low and high")
        return self

    @property
    def kind(self) -> str:
        """float, int or categorical (the spec loader fills ``type`` in from the YAML)."""
        if self.type is not None:
            return self.type
        return "categorical" if self.choices is not None else "float"

    @property
    def bounds(self) -> tuple[float, float]:
        """(low, high) of a range (the validator has made sure both are given)."""
        if self.low is None or self.high is None:
            raise ValueError("choices have no bounds")
        return self.low, self.high

    def values(self) -> list[Any]:
        """Representative values to validate against RunConfig: choices, else the bounds."""
        if self.kind == "categorical":
            return list(self.choices or [])
        cast = int if self.kind == "int" else float
        return [cast(b) for b in self.bounds]

    def grid(self) -> list[Any] | None:
        """Every value for a grid sampler, or None when the range is continuous."""
        if self.kind == "categorical":
            return list(self.choices or [])
        low, high = self.bounds
        if self.kind == "int":
            step = int(self.step or 1)
            return list(range(int(low), int(high) + 1, step))
        if self.step is None:
            return None
        n = math.floor((high - low) / self.step + 1e-9) + 1
        return [low + i * self.step for i in range(n)]


class TuneSpec(_Strict):
    """What to tune and how many trials to spend (per cell in compare mode)."""

    params: dict[str, ParamSpec] = Field(
        description="dotted config key -> its range or choices (e.g. train.lr)"
    )
    trials: int = Field(5, ge=1, description="trials (per cell in compare mode)")
    sampler: Literal["auto", "tpe", "random", "grid"] = Field(
        "auto",
        description="auto: in compare mode the same deterministic points in every cell (a grid "
        "for one parameter, quasi-random for more; bench.sweeps.tuning), then TPE; search: TPE",
    )
    points: int | None = Field(
        None, ge=1, description="auto: the deterministic points (default min(trials, 5))"
    )

    @model_validator(mode="after")
    def _points_fit(self) -> TuneSpec:
        if self.points is not None and self.sampler != "auto":
            raise ValueError(f"points: only with sampler 'auto', not {self.sampler!r}")
        if self.points is not None and self.points > self.trials:
            raise ValueError(f"points={self.points} exceeds trials={self.trials}")
        return self

    @field_validator("params", mode="before")
    @classmethod
    def _coerce_params(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        out: dict[str, Any] = {}
        for key, p in v.items():
            if isinstance(p, list):  # shorthand: a list of choices
                p = {"choices": p}
            if isinstance(p, dict) and "type" not in p and "choices" not in p:
                raw = [p.get("low"), p.get("high"), p.get("step")]
                is_int = all(
                    x is None or (isinstance(x, int) and not isinstance(x, bool)) for x in raw
                )
                p = {**p, "type": "int" if is_int and not p.get("log") else "float"}
            out[key] = p
        return out

    @field_validator("params")
    @classmethod
    def _not_empty(cls, v: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        if not v:
            raise ValueError("empty search space: name at least one parameter")
        return v


Direction = Literal["minimize", "maximize"]


class Objective(_Strict):
    """A metric from the run's final metrics and whether to minimize or maximize it."""

    metric: str = Field("val/loss", description="a key of the run's final metrics")
    direction: Direction = Field("minimize", description="minimize or maximize it")


class Budget(_Strict):
    """Limits: steps per trial, sweep wall clock, total tuning trials."""

    max_steps: int | None = Field(None, ge=1, description="sets train.max_steps of every run")
    wall_clock: float | None = Field(
        None, gt=0, description="seconds; no new trial starts after it"
    )
    trials: int | None = Field(
        None, ge=1, description="cap on tuning and search trials over the sweep"
    )


class ScaleSpec(_Strict):
    """A size ladder: every cell runs at every rung (Tay et al. 2022 compare architectures
    this way; a gap at one size can grow, shrink or flip at another).

    ``ladder`` zips its lists: rung i sets the i-th value of every key (``model.d_model``
    and ``model.n_heads`` together, say). ``budget`` says how training length follows
    size: ``steps`` (the spec's steps at every rung), ``tokens`` (``tokens`` tokens at
    every rung: steps = tokens / (batch size x sequence length)) or ``tokens_per_param``
    (``tokens_per_param`` x the rung's parameters, the Chinchilla-style ratio of Hoffmann
    et al. 2022; about 20 there).

    ``tune`` says where the tuning happens: ``every`` rung tunes its own cells, or only
    the ``smallest`` rung does and every larger rung re-runs (with the seeds) the best
    setting its cell found there. Transfer is what µP is for (Yang et al. 2022,
    "Tensor Programs V": ``train.parameterization: mup``); under standard
    parameterization the best learning rate moves with width (docs/mup.md), so a
    transferred rung may be mis-tuned, and the report says so.
    """

    ladder: dict[str, list[Scalar]] = Field(
        description="config key -> one value per rung (the lists are zipped)"
    )
    tune: Literal["every", "smallest"] = Field(
        "every", description="tune at every rung, or at the smallest and transfer"
    )
    budget: Literal["steps", "tokens", "tokens_per_param"] = Field(
        "steps", description="how training length follows size"
    )
    tokens: int | None = Field(None, ge=1, description="budget tokens: tokens at every rung")
    tokens_per_param: float | None = Field(
        None, gt=0, description="budget tokens_per_param: tokens per parameter (Chinchilla: ~20)"
    )
    extrapolate_to: float | None = Field(
        None,
        gt=0,
        description="the report also gives each trend's fitted gap at this many parameters "
        "(an extrapolation nothing measured supports)",
    )

    @model_validator(mode="after")
    def _shape(self) -> ScaleSpec:
        lengths = {len(v) for v in self.ladder.values()}
        if not self.ladder or lengths == {0}:
            raise ValueError("ladder: give at least one key with its values, rung by rung")
        if len(lengths) > 1:
            raise ValueError(
                "ladder: every key needs one value per rung (the lists are zipped); "
                f"got lengths {sorted(lengths)}"
            )
        if lengths.pop() < 2:
            raise ValueError("ladder: a ladder needs two rungs or more")
        if self.budget == "tokens" and self.tokens is None:
            raise ValueError("budget: tokens needs 'tokens' (tokens trained at every rung)")
        if self.budget == "tokens_per_param" and self.tokens_per_param is None:
            raise ValueError("budget: tokens_per_param needs 'tokens_per_param' (e.g. 20)")
        return self

    def rungs(self) -> list[dict[str, Any]]:
        """The overrides of each rung, smallest first as written."""
        keys = list(self.ladder)
        return [
            dict(zip(keys, values, strict=True))
            for values in zip(*self.ladder.values(), strict=True)
        ]


class RetrySpec(_Strict):
    """Fault tolerance: how often a trial whose worker died is retried; RDB heartbeats."""

    max_retries: int = Field(2, ge=0, description="retries of a trial whose worker died")
    heartbeat_interval: int = Field(
        10, ge=1, description="seconds between heartbeats (RDB storages only)"
    )
    grace_period: int | None = Field(
        None, ge=1, description="seconds without a heartbeat before a trial is failed (None: 2x)"
    )


TIME_LIMIT = r"^(\d+|(\d+-)?\d+(:\d{1,2}){0,2})$"  # Slurm's --time: MIN, [D-]HH[:MM[:SS]], MM:SS
MEMORY = r"^\d+[KMGT]?$"  # Slurm's --mem: a number, optionally K/M/G/T


class LauncherSpec(_Strict):
    """Where a sweep's workers run (``bench sweep --launcher``; flags override these keys).

    ``local``: worker processes on this machine (launcher.py). ``slurm``: one
    Slurm job array of ``workers`` jobs, submitted through submitit (slurm.py);
    a worker is one trial at a time, on ``gpus_per_worker`` GPUs (``--gres=gpu:N``).
    A worker of ``nodes`` x ``tasks_per_node`` > 1 Slurm tasks trains each trial
    with DDP over all of them, one rank a task (:mod:`bench.sweeps.slurm.ddp_tasks`);
    its ``gpus_per_worker`` (one a rank) and ``cpus_per_worker`` are split evenly
    over its tasks.
    """

    name: Literal["local", "slurm"] = Field(
        "local", description="processes on this machine, or a Slurm job array"
    )
    workers: int | None = Field(
        None, ge=1, description="None: local, one per GPU group (1 on CPU); slurm, 1"
    )
    partition: str | None = Field(None, min_length=1, description="slurm: --partition")
    account: str | None = Field(None, min_length=1, description="slurm: --account")
    qos: str | None = Field(None, min_length=1, description="slurm: --qos")
    time: str | None = Field(
        None,
        pattern=TIME_LIMIT,
        description="minutes, or [D-]HH:MM:SS as sbatch --time takes (slurm: the time limit)",
    )
    gpus_per_worker: int | None = Field(
        None, ge=1, description="slurm: --gres=gpu:N (None: CPU workers)"
    )
    cpus_per_worker: int | None = Field(None, ge=1, description="slurm: None: one per task")
    nodes: int = Field(1, ge=1, description="slurm: nodes of one worker")
    tasks_per_node: int = Field(
        1, ge=1, description="slurm: tasks (DDP ranks) on each node of a worker"
    )
    mem: str | None = Field(
        None,
        pattern=MEMORY,
        description="a number with an optional K/M/G/T suffix, e.g. 16G (slurm: memory a worker)",
    )
    sbatch: list[str] = Field(
        default_factory=list, description='slurm: extra sbatch options ("--constraint=a100")'
    )
    signal_delay: int = Field(
        120, ge=10, description="slurm: seconds before the time limit of the pre-timeout signal"
    )

    @property
    def ranks(self) -> int:
        """Slurm tasks of one worker: the DDP ranks of its trials when more than one."""
        return self.nodes * self.tasks_per_node

    @property
    def cpus_per_task(self) -> int:
        """``--cpus-per-task``: the worker's CPUs split over its tasks (one each by default)."""
        return (self.cpus_per_worker or self.ranks) // self.ranks

    @property
    def gpus_per_node(self) -> int | None:
        """``--gres=gpu:N`` (per node): the worker's GPUs split over its nodes."""
        return self.gpus_per_worker // self.nodes if self.gpus_per_worker else None


class PhaseSpec(_Strict):
    """What the runs of one phase change over ``base``: only their ``diagnostics`` (a partial
    diagnostics section, e.g. ``{hessian: {enabled: false}}``). Training is never changed
    per phase, so a seed run re-runs exactly the configuration its tuning trial trained."""

    diagnostics: dict[str, Any] = Field(
        default_factory=dict, description="a partial diagnostics section for this phase's runs"
    )


class PhasesSpec(_Strict):
    """Per-phase settings: ``tune`` for tuning (and search) trials, ``seeds`` for the seed
    runs the report's numbers and figures come from. The Hessian and the loss landscape
    are drawn only from seed runs, so a spec can switch them off in ``tune``."""

    tune: PhaseSpec = Field(default_factory=PhaseSpec, description="tuning and search trials")
    seeds: PhaseSpec = Field(default_factory=PhaseSpec, description="seed runs")

    def of(self, phase: str) -> PhaseSpec:
        """The settings of a trial's phase (``tune``, ``search`` or ``seed``)."""
        return self.seeds if phase == "seed" else self.tune


class SweepSpec(_Strict):
    """A whole sweep. Exactly one of ``compare`` and ``search``."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        # also the text of a pattern error (bench.validation): what is allowed
        description="letters, digits and _ . -, starting with a letter or digit "
        "(the sweep's directory: runs/sweeps/NAME)",
    )
    description: str = Field("", description="one line for the report")
    base: dict[str, Any] = Field(
        default_factory=dict, description="a partial run config (may hold variant)"
    )
    compare: dict[str, list[Scalar]] | None = Field(
        None, description="config key -> values; every combination is a cell"
    )
    tune: TuneSpec | None = Field(None, description="compare mode: what each cell tunes")
    search: TuneSpec | None = Field(
        None, description="search mode: architecture and hyperparameters in one study"
    )
    seeds: int | None = Field(
        None, ge=0, description="seed runs of each cell's best (None: 3 compare, 0 search)"
    )
    seed_data: bool = Field(
        False,
        description="seed runs draw their own task data too (task.seed = the run's seed), so "
        "replicates vary the validation sample",
    )
    objective: Objective | list[Objective] = Field(
        default_factory=Objective, description="one, or several (search mode: a Pareto front)"
    )
    pruner: Literal["chance", "hyperband", "median", "none"] | None = Field(
        None, description="None: chance in compare mode; hyperband in search (none if several)"
    )
    budget: Budget = Field(default_factory=Budget, description="limits")
    scale: ScaleSpec | None = Field(None, description="a size ladder: every cell at every rung")
    retry: RetrySpec = Field(default_factory=RetrySpec, description="fault tolerance")
    seed: int = Field(0, description="the sampler's seed")
    launcher: LauncherSpec = Field(
        default_factory=LauncherSpec, description="where the workers run (flags override it)"
    )
    phases: PhasesSpec = Field(default_factory=PhasesSpec, description="per-phase diagnostics")

    @model_validator(mode="after")
    def _mode(self, info: ValidationInfo) -> SweepSpec:
        if (self.compare is None) == (self.search is None):
            raise ValueError("give exactly one of 'compare' (cells) or 'search' (one study)")
        if self.search is not None and self.tune is not None:
            raise ValueError(
                "tune: only with compare; in search mode put every parameter in search.params"
            )
        for key, values in (self.compare or {}).items():
            if not values:
                raise ValueError(f"compare.{key}: no values; give at least one")
        if self.scale is not None:
            if self.compare is None:
                raise ValueError("scale: a ladder needs compare mode (cells to run at each rung)")
            both = sorted(set(self.scale.ladder) & set(self.compare))
            if both:
                raise ValueError(f"scale.ladder and compare both set {', '.join(both)}")
            if self.scale.tune == "smallest" and (self.tune is None or self.seeds == 0):
                raise ValueError(
                    "scale.tune: smallest transfers the smallest rung's tuned setting to the "
                    "larger rungs' seed runs; it needs a 'tune' section and seeds >= 1"
                )
        if not self.objectives:
            raise ValueError("objective: empty list; give at least one metric")
        if len(self.objectives) > 1 and self.compare is not None:
            raise ValueError(
                "objective: several objectives need search mode (compare is single-objective)"
            )
        if len(self.objectives) > 1 and self.pruner not in (None, "none"):
            raise ValueError(
                f"pruner={self.pruner!r}: pruning is single-objective only; use pruner: none"
            )
        recorded = bool(info.context and info.context.get(RECORDED))
        if self.compare is not None and self.pruner in RELATIVE_PRUNERS and not recorded:
            raise ValueError(
                f"pruner={self.pruner!r} compares a trial's early curve with other learning "
                "rates' and would decide the comparison; allowed in compare mode: chance, none"
            )
        if self.seeds is None:  # resolved here, so spec.yaml records the number used
            object.__setattr__(self, "seeds", DEFAULT_SEEDS if self.compare is not None else 0)
        return self

    @property
    def objectives(self) -> list[Objective]:
        return list(self.objective) if isinstance(self.objective, list) else [self.objective]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def effective_pruner(self) -> str:
        if self.pruner is not None:
            return self.pruner
        if self.compare is not None:
            return "chance"
        return "none" if self.multi_objective else "hyperband"

    @property
    def space(self) -> TuneSpec | None:
        """The tuned parameters: ``tune`` (compare) or ``search``."""
        return self.search if self.search is not None else self.tune

    def cells(self) -> list[tuple[str, dict[str, Any]]]:
        """(cell key, overrides) for every combination of compare axes (at every rung of a
        ladder, rung by rung); search: one cell."""
        if self.compare is None:
            return [("search", {})]
        keys = list(self.compare)
        rungs = self.scale.rungs() if self.scale is not None else [{}]
        out = []
        for rung in rungs:
            for combo in itertools.product(*(self.compare[k] for k in keys)):
                overrides = {**dict(zip(keys, combo, strict=True)), **rung}
                key = cell_key(overrides)
                out.append((key, {**overrides, **self._rung_steps(overrides)}))
        return out

    def tuning_source(self) -> dict[str, str]:
        """Cell key -> the cell whose tuning it re-runs: itself, or with ``scale.tune:
        smallest`` the cell of the same compare values at the smallest rung."""
        cells = [key for key, _ in self.cells()]
        if self.scale is None or self.scale.tune == "every":
            return {key: key for key in cells}
        per_rung = len(cells) // len(self.scale.rungs())  # cells() lists rung by rung
        return {key: cells[i % per_rung] for i, key in enumerate(cells)}

    def _rung_steps(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """``train.max_steps`` of a ladder cell whose budget is in tokens ({}: the spec's)."""
        scale = self.scale
        if scale is None or scale.budget == "steps":
            return {}
        from bench.training.resources import count_params

        cfg = build_run_config(overrides={**run_config_overrides(self), **overrides})
        per_step = cfg.task.batch_size * cfg.task.seq_len
        tokens = (
            scale.tokens
            if scale.budget == "tokens"
            else (scale.tokens_per_param or 0) * count_params(cfg)
        )
        return {"train.max_steps": max(1, math.ceil((tokens or 0) / per_step))}

    @property
    def ladder_keys(self) -> list[str]:
        """The config keys a ladder varies ([] without one)."""
        return list(self.scale.ladder) if self.scale is not None else []

    def trials_per_cell(self) -> int:
        """The tuning budget of each cell: ``trials``, at most the grid size; 1 with no tune."""
        space = self.space
        if space is None:
            return 1
        n = space.trials
        if space.sampler == "grid":
            size = 1
            for p in space.params.values():
                size *= len(p.grid() or [])
            n = min(n, size)
        return n

    def dump(self) -> str:
        """The resolved spec as YAML (what ``spec.yaml`` in the sweep directory holds)."""
        data = self.model_dump(mode="json", exclude_none=True)
        if self.launcher == LauncherSpec():  # the default: spec.yaml files stay as they were
            data.pop("launcher")
        if self.phases == PhasesSpec():
            data.pop("phases")
        return yaml.safe_dump(data, sort_keys=False)


def cell_key(overrides: dict[str, Any]) -> str:
    """``{"model.norm_placement": "pre"}`` -> ``"norm_placement=pre"`` (stable, readable)."""
    return ",".join(f"{k.removeprefix('model.')}={_fmt(v)}" for k, v in overrides.items()) or "base"


def _fmt(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def slug(text: str) -> str:
    """A file-name-safe version of a cell key."""
    return re.sub(r"[^A-Za-z0-9_.=+-]+", "_", text).strip("_") or "x"


def run_config_overrides(spec: SweepSpec) -> dict[str, Any]:
    """The spec's base config as flat overrides (so explicit model keys beat a variant preset)."""
    data = flatten(spec.base)
    if spec.budget.max_steps is not None:
        data["train.max_steps"] = spec.budget.max_steps
    return data


def phase_overrides(spec: SweepSpec, phase: str) -> dict[str, Any]:
    """The flat overrides ``phases`` gives the runs of ``phase`` (tune, search or seed)."""
    return flatten({"diagnostics": spec.phases.of(phase).diagnostics})


def build_cell_config(
    spec: SweepSpec,
    overrides: dict[str, Any],
    where: str,
    source: str = "",
    phase: str | None = None,
):
    """The RunConfig of base (+ the ``phase``'s settings) + overrides; a ConfigError names the
    spec key ``where``."""
    per_phase = phase_overrides(spec, phase) if phase is not None else {}
    try:
        return build_run_config(overrides={**run_config_overrides(spec), **per_phase, **overrides})
    except ConfigError as e:
        prefix = f"{source}: " if source else ""
        raise ConfigError(f"{prefix}{where}: {e}") from None


def validate_spec_configs(spec: SweepSpec, source: str = "") -> None:
    """Build every cell's config, and each tuned value inside each cell, so bad values fail now
    (and a cell that needs an optional package that is not installed)."""
    check_run_config(build_cell_config(spec, {}, "base", source))
    for name in ("tune", "seeds"):
        if getattr(spec.phases, name).diagnostics:
            phase = "seed" if name == "seeds" else "tune"
            build_cell_config(spec, {}, f"phases.{name}", source, phase=phase)
    space = spec.space
    for key, overrides in spec.cells():
        for axis, value in overrides.items():
            section = "scale.ladder" if axis in spec.ladder_keys else "compare"
            if axis in spec.ladder_keys or axis in (spec.compare or {}):
                build_cell_config(spec, {axis: value}, f"{section}.{axis}={value!r}", source)
        check_run_config(build_cell_config(spec, overrides, f"compare cell {key}", source))
        if space is None:
            continue
        section = "search" if spec.search is not None else "tune"
        for name, p in space.params.items():
            if space.sampler == "grid" and p.grid() is None:
                raise ConfigError(
                    f"{source + ': ' if source else ''}{section}.params.{name}: the grid sampler "
                    "needs choices or a step for a float range"
                )
            for value in p.values():
                build_cell_config(
                    spec, {**overrides, name: value}, f"{section}.params.{name}={value!r}", source
                )


def parse_spec(data: dict[str, Any], source: str = "", recorded: bool = False) -> SweepSpec:
    """Validate a spec mapping (types, then every RunConfig it implies).

    ``recorded``: the ``spec.yaml`` of an existing sweep directory, read to report on
    runs that already exist. Its types are checked; the rules that only decide
    whether a *new* sweep may start are not (the RunConfig of every cell, which an
    older bench may have accepted, and pruners refused in compare mode since).
    """
    try:
        spec = SweepSpec.model_validate(data, context={RECORDED: recorded})
    except ValidationError as e:
        raise ConfigError(describe(e, SweepSpec, source)) from None
    if not recorded:
        validate_spec_configs(spec, source)
    return spec


def load_spec(path: str | Path, recorded: bool = False) -> SweepSpec:
    """Read and validate a sweep spec YAML file (see :func:`parse_spec`); ConfigError (one line)."""
    return parse_spec(load_yaml(path, "sweep spec"), str(path), recorded)

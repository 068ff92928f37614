"""One number per run (or per seed of a group of cells) from a sweep's records.

Which runs count: the seed phase's runs of each cell (its best tuning config re-run
with fresh seeds, as the report compares). A sweep without ``tune`` has nothing to
select, so its single tuning run per cell is one more seed and counts too.

What a run that diverged or was pruned counts as is defined here, once, per metric
(``MetricSpec.on_failure``, :func:`failure_policy`), and the report prints it:

``worst`` (final metrics and differences)
    the worse of the metric's chance value (the task baseline) and the worst value
    any completed counted run of the sweep reached: dropping the run would make a
    variant that diverges look better than one that trains badly, and counting it
    as chance alone would let it beat a run that stalled above chance (for a
    difference such as loss@4x - loss@1x, chance is 0, a perfect score).
``init_cap`` (LR sensitivity)
    the loss at initialization, as Wortsman et al. 2023 (Sec. 2.2) cap every loss;
    the uniform predictor's loss ``ln V`` stands for the loss at initialization.
``recorded`` (metrics reduced over steps)
    the values logged up to the failure (``metrics.csv`` keeps every finite step).
``exclude``
    left out, and named in the report.

A run that *failed* (a crash, not a property of the model) is always left out and named.

Bounds: each sample records whether it sits at the ceiling (within ``bound_tol`` of
the metric's ``best`` value) or at the floor (within ``bound_tol`` of chance, or
worse than chance); for a ``minus`` metric both components must sit there; a run
counted by the ``worst`` policy is at the floor. :mod:`bench.claims.rules` calls a
contrast between cells whose runs all sit at one bound censored.

LR sensitivity (Wortsman et al. 2023, "Small-scale proxies for large-scale
Transformer training instabilities", §2.2): for one group of cells (all axes but
the learning rate) and one seed, E_eta[min(l(eta), l0) - l*] over the learning
rates eta of the grid, where l(eta) is the final loss at eta, l0 the loss at
initialization (the uniform predictor's, ``ln V``) and l* the best loss over the grid.

Log-log slope (``reduce: loglog_slope``): for one group of cells (all axes but
``over``, e.g. ``model.n_layers``) and one seed, the least-squares slope of
``log value`` against ``log x`` over the axis values x; a power law ``value ~ x^k``
has slope k (Xiong et al. 2020, Theorem 1: the gradient of the last FFN's W2 at init
is ~ L^-1/2 for Pre-LN, independent of L for Post-LN). Seeds pair the cells: with
``seed_data`` the runs of one seed share their data across depths.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from bench.claims.spec import LAST, MetricSpec, scaled_key
from bench.report.collect import SweepData, history

FAILED_RUN = ("diverged", "pruned")  # what on_failure decides; "failed" is a crash
CEILING, FLOOR = "ceiling", "floor"
DEFAULT_TOL = 0.02  # of |chance - best|

POLICY_WORDS = {
    "worst": "a diverged or pruned run counts as the worse of chance and the worst "
    "value a completed run of the sweep reached",
    "init_cap": "a diverged or pruned run counts as the loss at initialization, and "
    "every loss is capped there (Wortsman et al. 2023); ln V of the uniform predictor "
    "stands for the loss at initialization",
    "recorded": "a diverged or pruned run counts with the values it logged up to its failure",
    "exclude": "a diverged or pruned run is left out (named below)",
}


@dataclass(frozen=True)
class Sample:
    """One value of one cell (or of a group of cells collapsed over an axis);
    ``bound``: ``ceiling`` / ``floor`` when the run sits at one (see the module)."""

    cell: str
    axes: dict[str, str]
    seed: int | None
    value: float
    note: str = ""
    bound: str | None = None


@dataclass
class Samples:
    """Every sample of one metric, with what was left out and why."""

    metric: str
    values: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    policy: str = ""  # what a failed run counts as, in words

    def of(self, selector_match: Any) -> list[Sample]:
        """Samples whose axes satisfy ``selector_match(axes) -> bool``."""
        return [s for s in self.values if selector_match(s.axes)]


def failure_policy(spec: MetricSpec) -> str:
    """The metric's ``on_failure``, or its default (worst / init_cap / recorded)."""
    return spec.failure_policy


def counted_rows(data: SweepData) -> list[dict[str, Any]]:
    """The rows a claim judges: seed runs, plus tuning runs when nothing was tuned."""
    untuned = data.spec.tune is None
    return [r for r in data.rows if r["phase"] == "seed" or (untuned and r["phase"] == "tune")]


@dataclass(frozen=True)
class _Bounds:
    """The chance and best values of a metric's components, and the tolerance."""

    chance: dict[str, float]
    best: float | None
    tol: float | None
    lower_is_better: bool

    def of(self, values: dict[str, float]) -> str | None:
        """``ceiling`` / ``floor`` when every component sits at it, else None."""
        if self.tol is None or not values:
            return None
        if self.best is not None and all(abs(v - self.best) <= self.tol for v in values.values()):
            return CEILING
        if all(k in self.chance and self._at_floor(v, self.chance[k]) for k, v in values.items()):
            return FLOOR
        return None

    def _at_floor(self, v: float, chance: float) -> bool:
        if self.lower_is_better:
            return v >= chance - self.tol  # type: ignore[operator]
        return v <= chance + self.tol  # type: ignore[operator]


def _bounds(spec: MetricSpec, keys: list[str], chance: dict[str, float]) -> _Bounds:
    tol = spec.bound_tol
    if tol is None and spec.best is not None and keys and keys[0] in chance:
        tol = DEFAULT_TOL * abs(chance[keys[0]] - spec.best)
    return _Bounds(chance, spec.best, tol, spec.lower_is_better)


def run_samples(data: SweepData, name: str, spec: MetricSpec) -> Samples:
    """One :class:`Sample` per counted run (then collapsed over ``spec.over``)."""
    policy = failure_policy(spec)
    out = Samples(name, policy=POLICY_WORDS[policy])
    chance = _sweep_baseline(data)
    keys = _keys(spec, data)
    bounds = _bounds(spec, keys, chance)
    rows = counted_rows(data)
    worst = _worst(rows, keys, spec, chance) if policy == "worst" else None
    for row in rows:
        label = f"{row['cell']} seed {row['seed']}"
        if row["status"] in ("running", "waiting", "queued"):
            out.notes.append(f"{label}: not finished ({row['status']})")
            continue
        got = _value(row, spec, keys, policy, worst, chance)
        if isinstance(got, str):
            out.notes.append(f"{label}: {got}")
            continue
        value, parts, note = got
        if note:
            out.notes.append(f"{label}: {note}")
        bound = FLOOR if note and policy == "worst" else bounds.of(parts)
        seed = row["seed"] if isinstance(row["seed"], int) else None
        axes = {a: str(row.get(a, "")) for a in data.axes}
        out.values.append(Sample(row["cell"], axes, seed, value, note, bound))
    if spec.over is not None:
        out = _collapse(out, spec, chance)
    return _transformed(out, spec)


def _keys(spec: MetricSpec, data: SweepData) -> list[str]:
    """The final-metric keys a metric reads (one, or two for ``minus``)."""
    keys = [scaled_key(spec.key, data.train_length)]
    if spec.minus:
        keys.append(scaled_key(spec.minus, data.train_length))
    return keys


def _worst(
    rows: list[dict[str, Any]], keys: list[str], spec: MetricSpec, chance: dict[str, float]
) -> float | None:
    """The worse of chance and the worst completed run's value (None: neither known)."""
    vals = [_combine(r["metrics"], keys) for r in rows if r["status"] == "completed"]
    known = [v for v in vals if v is not None]
    base = _combine(chance, keys)
    if base is not None:
        known.append(base)
    if not known:
        return None
    return max(known) if spec.lower_is_better else min(known)


def _combine(values: dict[str, float], keys: list[str]) -> float | None:
    if any(k not in values for k in keys):
        return None
    return values[keys[0]] - (values[keys[1]] if len(keys) > 1 else 0.0)


def _value(
    row: dict[str, Any],
    spec: MetricSpec,
    keys: list[str],
    policy: str,
    worst: float | None,
    chance: dict[str, float],
) -> tuple[float, dict[str, float], str] | str:
    """(value, its components, note) of one run, or why it is left out."""
    status = row["status"]
    failed = status in FAILED_RUN
    if failed and policy == "exclude":
        return f"{status}: left out (on_failure: exclude)"
    if spec.steps is not None:
        v = _over_steps(row["run_dir"], spec.key, spec.steps)
        if v is None:
            return f"no {spec.key} in metrics.csv ({status})"
        return (
            v,
            {spec.key: v},
            (f"{status}: counted with its values up to the failure" if failed else ""),
        )
    if failed and policy == "worst":
        if worst is None:
            return f"{status}, and no chance level or completed run of {keys[0]} to count it as"
        return worst, {}, f"{status}: counted as the worst value ({worst:.3g})"
    if failed and policy == "init_cap":
        l0 = {**chance, **(row.get("baseline") or {})}.get("uniform/val/loss")
        if l0 is None:
            return f"{status}, and no loss at initialization (uniform/val/loss) recorded"
        return l0, {}, f"{status}: counted as the loss at initialization ({l0:.3g})"
    if status != "completed":
        return f"{status}: left out ({row.get('reason') or 'no reason recorded'})"
    m = row["metrics"]
    missing = [k for k in keys if k not in m]
    if missing:
        return f"no {missing[0]} recorded"
    parts = {k: float(m[k]) for k in keys}
    return parts[keys[0]] - (parts[keys[1]] if len(keys) > 1 else 0.0), parts, ""


def _transformed(samples: Samples, spec: MetricSpec) -> Samples:
    """Each sample's value under ``spec.transform``; a value it is undefined for is left out."""
    if spec.transform is None:
        return samples
    out = Samples(samples.metric, notes=list(samples.notes), policy=samples.policy)
    for s in samples.values:
        if s.value > 0:
            out.values.append(replace(s, value=math.log10(s.value)))
        else:
            out.notes.append(f"{s.cell} seed {s.seed}: {s.value:.3g} <= 0 has no log10; left out")
    return out


def _last_key(keys: set[str], pattern: str) -> str | None:
    """``pattern`` with :data:`LAST` replaced by the highest index among ``keys``
    (``cond/x/block_{last}`` -> ``cond/x/block_23``); None when no key matches."""
    before, _, after = pattern.partition(LAST)
    found = re.compile(re.escape(before) + r"(\d+)" + re.escape(after) + "$")
    indices = [int(m.group(1)) for k in keys if (m := found.match(k))]
    return f"{before}{max(indices)}{after}" if indices else None


def _over_steps(run_dir: str, pattern: str, how: str) -> float | None:
    rows = history(run_dir)
    if LAST in pattern:
        resolved = _last_key({k for r in rows for k in r}, pattern)
        if resolved is None:
            return None
        pattern = resolved
    prefix = pattern[:-1] if pattern.endswith("*") else None
    vals = []
    for r in rows:
        for k, v in r.items():
            if (k.startswith(prefix) if prefix is not None else k == pattern) and math.isfinite(v):
                vals.append((r.get("step", 0.0), v))
    if not vals:
        return None
    if how == "max":
        return max(v for _, v in vals)
    if how == "min":
        return min(v for _, v in vals)
    if how == "first":
        first = min(s for s, _ in vals)
        return max(v for s, v in vals if s == first)  # the first step's largest (over layers)
    last = max(s for s, _ in vals)
    return max(v for s, v in vals if s == last)  # the last step's largest (over layers)


def _sweep_baseline(data: SweepData) -> dict[str, float]:
    """Chance levels from any run of the sweep (the task is shared by all cells)."""
    for r in data.rows:
        if r.get("baseline"):
            return dict(r["baseline"])
    return {}


def _collapse(samples: Samples, spec: MetricSpec, chance: dict[str, float]) -> Samples:
    """Per (group, seed): ``spec.reduce`` over the values of ``spec.over``."""
    if spec.reduce == "loglog_slope":
        return _loglog_slopes(samples, spec)
    return _lr_sensitivity(samples, spec, chance)


def _by_group_and_seed(
    samples: Samples, over: str
) -> tuple[list[float], dict[tuple, dict[float, float]], dict[tuple, dict[str, str]]]:
    """The axis values of ``over``; per (other axes, seed) the value at each; their axes."""
    grid = sorted({float(s.axes[over]) for s in samples.values})
    groups: dict[tuple, dict[float, float]] = defaultdict(dict)
    axes_of: dict[tuple, dict[str, str]] = {}
    for s in samples.values:
        rest = {a: v for a, v in s.axes.items() if a != over}
        key = (tuple(sorted(rest.items())), s.seed)
        groups[key][float(s.axes[over])] = s.value
        axes_of[key] = rest
    return grid, groups, axes_of


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``log y`` against ``log x`` (every x and y > 0, two x's or more)."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sxx


def _loglog_slopes(samples: Samples, spec: MetricSpec) -> Samples:
    """Per (group, seed): :func:`loglog_slope` of the value against ``spec.over``."""
    over = (spec.over or "").removeprefix("model.")
    grid, groups, axes_of = _by_group_and_seed(samples, over)
    out = Samples(samples.metric, notes=list(samples.notes), policy=samples.policy)
    for key, values in sorted(groups.items(), key=lambda kv: str(kv[0])):
        group = ",".join(f"{a}={v}" for a, v in key[0]) or "all"
        missing = [x for x in grid if x not in values]
        if missing or len(grid) < 2:
            why = f"no run at {over}={missing}" if missing else f"one value of {over}"
            out.notes.append(f"{group} seed {key[1]}: {why}; seed left out")
            continue
        if min(grid) <= 0 or min(values.values()) <= 0:
            out.notes.append(f"{group} seed {key[1]}: a value <= 0 has no log; seed left out")
            continue
        slope = loglog_slope(grid, [values[x] for x in grid])
        out.values.append(Sample(group, axes_of[key], key[1], slope))
    return out


def _lr_sensitivity(samples: Samples, spec: MetricSpec, chance: dict[str, float]) -> Samples:
    """Per (group, seed): LR sensitivity over the values of ``spec.over``."""
    over = (spec.over or "").removeprefix("model.")
    grid, groups, axes_of = _by_group_and_seed(samples, over)
    l0 = chance.get("uniform/val/loss")
    out = Samples(samples.metric, notes=list(samples.notes), policy=samples.policy)
    if l0 is None:
        out.notes.append("no initial loss (uniform/val/loss) recorded: LR sensitivity not formed")
        return out
    for key, losses in sorted(groups.items(), key=lambda kv: str(kv[0])):
        group = ",".join(f"{a}={v}" for a, v in key[0]) or "all"
        missing = [lr for lr in grid if lr not in losses]
        if missing:
            out.notes.append(f"{group} seed {key[1]}: no run at {over}={missing}; seed left out")
            continue
        capped = [min(losses[lr], l0) for lr in grid]
        best = min(capped)
        value = sum(c - best for c in capped) / len(capped)
        out.values.append(Sample(group, axes_of[key], key[1], value))
    return out

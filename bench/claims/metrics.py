"""One number per run (or per seed of a group of cells) from a sweep's records.

Which runs count: the seed phase's runs of each cell (its best tuning config re-run
with fresh seeds, as the report compares). A sweep without ``tune`` has nothing to
select, so its single tuning run per cell is one more seed and counts too.

A run that diverged or was pruned counts as the metric's chance value (the task
baseline in its ``summary.json``), not as a missing run: dropping it would make a
variant that diverges look better than one that trains badly. A run that failed is
left out and named. Metrics reduced over steps (``steps: max``) read
``metrics.csv``, which a diverged run has up to its last finite step.

LR sensitivity (Wortsman et al. 2023, "Small-scale proxies for large-scale
Transformer training instabilities", §2.2): for one group of cells (all axes but
the learning rate) and one seed, E_eta[min(l(eta), l0) - l*] over the learning
rates eta of the grid, where l(eta) is the final loss at eta, l0 the loss at
initialization (the uniform predictor's, ``ln V``) and l* the best loss over the grid.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any

from bench.claims.spec import MetricSpec, scaled_key
from bench.report.collect import SweepData, history

COUNTED_AS_CHANCE = ("diverged", "pruned")


@dataclass(frozen=True)
class Sample:
    """One value of one cell (or of a group of cells collapsed over an axis)."""

    cell: str
    axes: dict[str, str]
    seed: int | None
    value: float
    note: str = ""


@dataclass
class Samples:
    """Every sample of one metric, with what was left out and why."""

    metric: str
    values: list[Sample] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def of(self, selector_match: Any) -> list[Sample]:
        """Samples whose axes satisfy ``selector_match(axes) -> bool``."""
        return [s for s in self.values if selector_match(s.axes)]


def counted_rows(data: SweepData) -> list[dict[str, Any]]:
    """The rows a claim judges: seed runs, plus tuning runs when nothing was tuned."""
    untuned = data.spec.tune is None
    return [r for r in data.rows if r["phase"] == "seed" or (untuned and r["phase"] == "tune")]


def run_samples(data: SweepData, name: str, spec: MetricSpec) -> Samples:
    """One :class:`Sample` per counted run (then collapsed over ``spec.over``)."""
    out = Samples(name)
    chance = _sweep_baseline(data)
    for row in counted_rows(data):
        axes = {a: str(row.get(a, "")) for a in data.axes}
        label = f"{row['cell']} seed {row['seed']}"
        status = row["status"]
        if status in ("running", "waiting", "queued"):
            out.notes.append(f"{label}: not finished ({status})")
            continue
        value, note = _value(data, row, spec, chance)
        if value is None:
            out.notes.append(f"{label}: {note}")
            continue
        if note:
            out.notes.append(f"{label}: {note}")
        seed = row["seed"] if isinstance(row["seed"], int) else None
        out.values.append(Sample(row["cell"], axes, seed, value, note))
    if spec.over is not None:
        out = _collapse(out, spec, data, chance)
    return _transformed(out, spec)


def _transformed(samples: Samples, spec: MetricSpec) -> Samples:
    """Each sample's value under ``spec.transform``; a value it is undefined for is left out."""
    if spec.transform is None:
        return samples
    out = Samples(samples.metric, notes=list(samples.notes))
    for s in samples.values:
        if s.value > 0:
            out.values.append(replace(s, value=math.log10(s.value)))
        else:
            out.notes.append(f"{s.cell} seed {s.seed}: {s.value:.3g} <= 0 has no log10; left out")
    return out


def _value(
    data: SweepData, row: dict[str, Any], spec: MetricSpec, chance: dict[str, float]
) -> tuple[float | None, str]:
    status = row["status"]
    if spec.steps is not None:
        v = _over_steps(row["run_dir"], spec.key, spec.steps)
        if v is None:
            return None, f"no {spec.key} in metrics.csv ({status})"
        return v, ""
    key = scaled_key(spec.key, data.train_length)
    minus = scaled_key(spec.minus, data.train_length) if spec.minus else None
    if status in COUNTED_AS_CHANCE and spec.diverged_as_chance:
        base = {**chance, **(row.get("baseline") or {})}
        if key in base and (minus is None or minus in base):
            v = base[key] - (base[minus] if minus else 0.0)
            return v, f"{status}: counted as chance ({key} {base[key]:.3g})"
        return None, f"{status}, and no chance level of {key} to count it as"
    if status != "completed":
        return None, f"{status}: left out ({row.get('reason') or 'no reason recorded'})"
    m = row["metrics"]
    if key not in m or (minus and minus not in m):
        return None, f"no {key if key not in m else minus} recorded"
    return m[key] - (m[minus] if minus else 0.0), ""


def _over_steps(run_dir: str, pattern: str, how: str) -> float | None:
    rows = history(run_dir)
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
    last = max(s for s, _ in vals)
    return max(v for s, v in vals if s == last)  # the last step's largest (over layers)


def _sweep_baseline(data: SweepData) -> dict[str, float]:
    """Chance levels from any run of the sweep (the task is shared by all cells)."""
    for r in data.rows:
        if r.get("baseline"):
            return dict(r["baseline"])
    return {}


def _collapse(samples: Samples, spec: MetricSpec, data: SweepData, chance: dict) -> Samples:
    """Per (group, seed): LR sensitivity over the values of ``spec.over``."""
    over = (spec.over or "").removeprefix("model.")
    grid = sorted({float(s.axes[over]) for s in samples.values})
    groups: dict[tuple, dict[float, float]] = defaultdict(dict)
    axes_of: dict[tuple, dict[str, str]] = {}
    for s in samples.values:
        rest = {a: v for a, v in s.axes.items() if a != over}
        key = (tuple(sorted(rest.items())), s.seed)
        groups[key][float(s.axes[over])] = s.value
        axes_of[key] = rest
    l0 = chance.get("uniform/val/loss")
    out = Samples(samples.metric, notes=list(samples.notes))
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

"""What the tuning phase did, and where it may have decided the comparison.

- the tuning method (``sweep.json`` ``tuning``, else the spec's sampler);
- every pruned tuning trial (cell, learning rate, step, reason), and cells whose
  pruned trials all sit at one end of the learning-rate range (the pruner, not
  the tuning, then decided that end);
- cells whose best learning rate lies at the edge of the searched range: the
  lowest or highest tuning point, or within one log-grid step of a bound (the
  optimum may lie outside: widen ``train.lr``'s range);
- the learning rate the seed runs actually used (their ``config.yaml``);
- the best tuning score against the seed-rerun mean: the best of N noisy
  trials is biased optimistic (the winner's curse), the seed-rerun mean is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bench.report.collect import SweepData, config_value

LR = "train.lr"


def method(data: SweepData) -> str:
    """One sentence on how each cell was tuned."""
    rec = data.meta.get("tuning")
    if isinstance(rec, dict) and rec.get("method"):
        pts = f", {rec['points']} deterministic points per cell" if rec.get("points") else ""
        desc = f": {rec['description']}" if rec.get("description") else ""
        return f"{rec['method']}{pts}{desc}"
    tune = data.spec.space
    if tune is None:
        return "no tuning (each cell ran its base configuration)"
    pruner = data.spec.pruner or "the default"
    return (f"{tune.sampler} sampler, {tune.trials} trials per cell, {pruner} pruner (from the spec; "
            "this sweep records no tuning protocol in sweep.json)")  # fmt: skip


def lr_bounds(data: SweepData) -> tuple[float, float] | None:
    """(low, high) of the searched learning-rate range, None when train.lr is not tuned."""
    tune = data.spec.space
    p = tune.params.get(LR) if tune is not None else None
    if p is None:
        return None
    if p.kind != "categorical" and _num(p.low) and _num(p.high):
        return float(p.low), float(p.high)  # type: ignore[arg-type]
    choices = [v for v in p.choices or [] if _num(v)]
    if choices and len(choices) == len(p.choices or []):
        return float(min(choices)), float(max(choices))  # type: ignore[type-var, arg-type]
    return None


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def tuning_rows(data: SweepData, cell: str | None = None) -> list[dict[str, Any]]:
    """Tuning trials (every phase but seeds), of one cell when given."""
    return [r for r in data.rows if r["phase"] != "seed" and (cell is None or r["cell"] == cell)]


def pruned(data: SweepData) -> list[dict[str, Any]]:
    """Every pruned tuning trial: cell, trial, lr, step, reason."""
    return [
        {"cell": r["cell"], "trial": r["trial"], "lr": r.get(LR) if _num(r.get(LR)) else None,
         "step": r.get("last_step"), "reason": r["reason"] or "pruned (no reason recorded)"}
        for r in tuning_rows(data) if r["status"] == "pruned"
    ]  # fmt: skip


def pruned_at_one_end(data: SweepData, cell: str) -> str | None:
    """A sentence when every pruned trial of the cell has a lower (or higher) lr than every
    trial that ran to the end; None otherwise."""
    rows = [r for r in tuning_rows(data, cell) if _num(r.get(LR))]
    cut = [float(r[LR]) for r in rows if r["status"] == "pruned"]
    done = [float(r[LR]) for r in rows if r["status"] == "completed"]
    if not cut or not done:
        return None
    if max(cut) < min(done):
        end, bound, edge = "lowest", f"≤ {max(cut):.2g}", min(done)
    elif min(cut) > max(done):
        end, bound, edge = "highest", f"≥ {min(cut):.2g}", max(done)
    else:
        return None
    who = (f"its one pruned trial had the {end} learning rate ({bound.split()[1]}"
           if len(cut) == 1 else f"all {len(cut)} pruned trials had the {end} learning rates "
           f"({bound}")  # fmt: skip
    return (f"{who}; the {end} that finished: {edge:.2g}): the pruner, not the tuning, decided "
            "that end")  # fmt: skip


def edge_lr(data: SweepData, cell: str, best: float | None) -> str | None:
    """A sentence when the cell's best lr is at the edge of the searched range."""
    if best is None or best <= 0:
        return None
    lrs = sorted({float(r[LR]) for r in tuning_rows(data, cell) if _num(r.get(LR)) and r[LR] > 0})
    if len(lrs) < 2:
        return None
    bounds = lr_bounds(data)
    if best <= lrs[0] or best >= lrs[-1]:
        end = "lowest" if best <= lrs[0] else "highest"
        return f"best lr {best:.2g} is the {end} of the {len(lrs)} tuning points: widen train.lr's range"
    if bounds is None or bounds[0] <= 0:
        return None
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    step = (hi - lo) / (len(lrs) - 1)  # one step of a log-spaced grid of this many points
    x = math.log(best)
    if x - lo < step * (1 - 1e-3) or hi - x < step * (1 - 1e-3):  # points keep 6 digits
        end = "lower" if x - lo < hi - x else "upper"
        bound = bounds[0] if end == "lower" else bounds[1]
        return (f"best lr {best:.2g} is within one log-grid step of the {end} bound "
                f"{bound:.2g}: widen train.lr's range")  # fmt: skip
    return None


def seed_lrs(rows: list[dict[str, Any]]) -> list[float]:
    """The learning rates the seed runs used (config.yaml; else the trial's overrides)."""
    out = []
    for r in rows:
        v = config_value(r, LR)
        if not _num(v):
            v = r.get(LR)
        if _num(v):
            out.append(float(v))
    return out


@dataclass(frozen=True)
class TuneVsRerun:
    """The best tuning score of a cell against its seed-rerun mean."""

    tuned: float | None
    rerun: float | None
    n_rerun: int

    @property
    def gap(self) -> float | None:
        if self.tuned is None or self.rerun is None:
            return None
        return self.rerun - self.tuned


WINNERS_CURSE = (
    "The best tuning score is the best of several noisy trials, so it is biased in its "
    "favour (the winner's curse); the seed-rerun mean, from fresh runs at the chosen "
    "learning rate, is the unbiased estimate and the one every comparison uses."
)

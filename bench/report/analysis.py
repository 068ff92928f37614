"""From the tidy table to what the report states: per-cell summaries, comparisons
along each compared axis, the quality/throughput Pareto front, parameter importance.

Comparisons pool over the other axes *within matched cells*: for values ``a`` and
``b`` of an axis, each group holds the seed runs of the cells with that value,
restricted to the combinations of the other axes (strata) where both ``a`` and
``b`` have results, so a missing cell never tilts one side; each value is
centred on its stratum, so the other axes' effects add no noise. Every pairwise
comparison of every axis is one family for the Holm correction.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.report import learning, modelinfo, stats, tuning
from bench.report.collect import SweepData
from bench.report.learning import CellLearning
from bench.report.tuning import TuneVsRerun

FINISHED = ("completed", "pruned", "diverged", "failed")


def quality(row: dict[str, Any], metric: str) -> float | None:
    """A run's quality value: the metric, else the objective value told to Optuna."""
    v = row["metrics"].get(metric)
    if v is None and metric.startswith("best/"):
        v = row["metrics"].get(metric.removeprefix("best/"))
    if v is None:
        v = row.get("value")
    return v if v is not None and math.isfinite(v) else None


@dataclass
class CellSummary:
    """One row of the per-cell table."""

    cell: str
    axes: dict[str, str]
    source: str  # "seed runs" | "best tuning trial" | "no finished run"
    quality: stats.Estimate
    values: list[float]
    rows: list[dict[str, Any]]  # the runs behind ``quality``
    trials: list[dict[str, Any]] = field(default_factory=list)  # every trial of the cell
    metrics: dict[str, stats.Estimate] = field(default_factory=dict)
    diverged: int = 0
    finished: int = 0
    lr: float | None = None  # the lr of the runs behind ``quality`` (seed runs: config.yaml)
    params: int | None = None
    learning: CellLearning = field(
        default_factory=lambda: CellLearning(learning.UNKNOWN, "not assessed")
    )
    seed_lrs: list[float] = field(default_factory=list)
    tune_best_lr: float | None = None
    tune_vs_rerun: TuneVsRerun = field(default_factory=lambda: TuneVsRerun(None, None, 0))
    edge_lr: str | None = None  # a sentence when the best tuned lr is at its range's edge
    model: dict[str, Any] = field(default_factory=dict)  # the cell's model section
    init: dict[str, str] = field(default_factory=dict)  # resolved init and embed_scale

    @property
    def divergence_rate(self) -> float | None:
        return self.diverged / self.finished if self.finished else None


def length_keys(data: SweepData) -> dict[str, str]:
    """Column label -> metric key for loss at 2x and 4x the training length (when logged)."""
    present = {k for r in data.rows for k in r["metrics"]}
    out = {}
    if data.train_length:
        for scale in (2, 4):
            key = f"val/loss@{data.train_length * scale}"
            if key in present:
                out[f"loss@{scale}x"] = key
    return out


TABLE_METRICS = {
    "val/acc": "val/acc",
    "exact match": "val/exact_match",
    "tokens/s": "throughput/tokens_per_sec",
    "MFU": "throughput/mfu",
    "λ_max": "hessian/lambda_max",
}


def _best_tuning_row(rows: list[dict[str, Any]], metric: str, minimize: bool) -> dict | None:
    scored = [(q, r) for r in rows
              if r["status"] == "completed" and (q := quality(r, metric)) is not None]  # fmt: skip
    if not scored:
        return None
    return (min if minimize else max)(scored, key=lambda qr: qr[0])[1]


def cell_summaries(data: SweepData) -> list[CellSummary]:
    """One summary per cell (planned cells first, then any others seen in the storage)."""
    metric, direction = data.quality
    minimize = direction == "minimize"
    extra = length_keys(data)
    cells = list(dict.fromkeys([*data.cells, *(r["cell"] for r in data.rows)]))
    search = data.spec.search is not None
    has_seeds = any(r["phase"] == "seed" for r in data.rows)
    out = []
    for cell in cells:
        rows = [r for r in data.rows if r["cell"] == cell]
        # Search mode: the one tuning study is no cell once seed runs name the winners.
        if (not rows and search) or (search and cell == "search" and has_seeds):
            continue
        seed_rows = [r for r in rows if r["phase"] == "seed" and r["status"] == "completed"]
        seed_rows = [r for r in seed_rows if quality(r, metric) is not None]
        tune_rows = [r for r in rows if r["phase"] != "seed"]
        best = _best_tuning_row(tune_rows, metric, minimize)
        if seed_rows:
            used, source = seed_rows, "seed runs"
        elif best is not None:
            used, source = [best], "best tuning trial"
        else:
            used, source = [], "no finished run"
        values = [q for r in used if (q := quality(r, metric)) is not None]  # every one here
        seed_lrs = tuning.seed_lrs(seed_rows)
        points = [(float(r["train.lr"]), q) for r in tune_rows
                  if r["status"] == "completed" and isinstance(r.get("train.lr"), int | float)
                  and (q := quality(r, metric)) is not None]  # fmt: skip
        model = modelinfo.cell_model(used or rows)
        summary = CellSummary(
            cell=cell,
            axes=_axes_of(data, cell, used or rows),
            source=source,
            quality=stats.bootstrap_mean_ci(values),
            values=values,
            rows=used,
            trials=rows,
            diverged=sum(r["status"] == "diverged" for r in rows),
            finished=sum(r["status"] in FINISHED for r in rows),
            lr=seed_lrs[0] if seed_lrs else _lr(best or (used[0] if used else None)),
            params=next((int(r["params"]) for r in used if r.get("params")), None),
            learning=learning.cell_learning(used, values, points, rows, metric, minimize),
            seed_lrs=seed_lrs,
            tune_best_lr=_lr(best),
            edge_lr=tuning.edge_lr(data, cell, _lr(best)),
            tune_vs_rerun=TuneVsRerun(
                quality(best, metric) if best is not None else None,
                stats.bootstrap_mean_ci(values).mean if source == "seed runs" else None,
                len(values) if source == "seed runs" else 0,
            ),
            model=model,
            init=modelinfo.resolved(model),
        )
        for label, key in {**extra, **TABLE_METRICS}.items():
            vals = [r["metrics"][key] for r in used if key in r["metrics"]]
            summary.metrics[label] = stats.bootstrap_mean_ci(vals)
        out.append(summary)
    return out


def _axes_of(data: SweepData, cell: str, rows: list[dict[str, Any]]) -> dict[str, str]:
    if rows:
        return {a: str(rows[0].get(a, "")) for a in data.axes}
    parts = dict(p.split("=", 1) for p in cell.split(",") if "=" in p)
    return {a: parts.get(a, "") for a in data.axes}


def _lr(row: dict[str, Any] | None) -> float | None:
    if row is None:
        return None
    v = row.get("train.lr")
    return float(v) if isinstance(v, int | float) else None


def rungs(data: SweepData, summaries: list[CellSummary]) -> list[tuple[str, list[CellSummary]]]:
    """A ladder's rungs, smallest first: (``d_model=64, n_heads=4``, its cells' summaries);
    one unnamed rung holding every cell when the sweep has no ladder."""
    if not data.ladder:
        return [("", summaries)]
    out: dict[str, list[CellSummary]] = {}
    for s in summaries:
        name = ", ".join(f"{a}={s.axes.get(a, '')}" for a in data.ladder)
        out.setdefault(name, []).append(s)
    return list(out.items())


# ----------------------------------------------------------------------------- comparisons


def axis_values(data: SweepData, axis: str) -> list[str]:
    """The values of a compared (or ladder) axis, in spec order."""
    key = data.axis_keys[axis]
    ladder = data.spec.scale.ladder if data.spec.scale is not None else {}
    spec_vals = (data.spec.compare or {}).get(key) or ladder.get(key)
    if spec_vals:
        return [str(v).lower() if isinstance(v, bool) else str(v) for v in spec_vals]
    return sorted({str(r.get(axis, "")) for r in data.rows if r.get(axis, "") != ""})


def learned(summaries: list[CellSummary]) -> list[CellSummary]:
    """The cells that may enter comparisons: not 'did not learn', not 'collapsed'."""
    return [s for s in summaries if not s.learning.excluded]


def comparisons(data: SweepData, summaries: list[CellSummary]) -> list[stats.Comparison]:
    """Every pairwise comparison of every axis among cells that learned, Holm-corrected
    as one family; a side left with no learned cell is inconclusive."""
    kept = learned(summaries)
    out = []
    for axis in (a for a in data.axes if a not in data.ladder):
        others = [a for a in data.axes if a != axis]
        values = axis_values(data, axis)
        if len(values) < 2:
            continue
        for i, (va, vb) in enumerate(itertools.combinations(values, 2)):
            (ga, gb), (ra, rb) = _matched_groups(kept, axis, va, vb, others)
            c = stats.compare(axis, va, ga, vb, gb, seed=i)
            gone = tuple(s.cell for s in summaries if s.learning.excluded
                         and s.axes.get(axis) in (va, vb))  # fmt: skip
            c = dataclasses.replace(c, excluded=gone,
                                    mean_a=float(np.mean(ra)) if ra else None,
                                    mean_b=float(np.mean(rb)) if rb else None)  # fmt: skip
            if not ga or not gb:
                c = dataclasses.replace(c, reason=_no_side_reason(summaries, axis, va, vb))
            out.append(c)
    return [_under_tuned(data, kept, c) for c in stats.adjust(out)]


def _under_tuned(data: SweepData, kept: list[CellSummary], c: stats.Comparison) -> stats.Comparison:
    """A significant difference is inconclusive when the worse side may be under-tuned: one
    of its cells found its best learning rate at the edge of the searched range, so its
    optimum may lie outside it (the better side at an edge only could do better still)."""
    if c.verdict != stats.SIGNIFICANT or c.diff is None:
        return c
    a_better = (c.diff < 0) == (data.direction == "minimize")
    worse = c.b if a_better else c.a
    edged = [s.cell for s in kept if s.axes.get(c.axis) == worse
             and s.edge_lr is not None]  # fmt: skip
    if not edged:
        return c
    return dataclasses.replace(
        c, verdict=stats.INCONCLUSIVE,
        reason=f"{worse} may be under-tuned: the best learning rate of {', '.join(edged)} "
        "lies at the edge of the searched range (widen train.lr's range and rerun)",
    )  # fmt: skip


def versus_best(
    data: SweepData, summaries: list[CellSummary]
) -> tuple[CellSummary, list[stats.Comparison]] | None:
    """The learned cell with the best mean, compared with every other learned cell.

    The comparisons are one Holm family decided by the rules of :mod:`stats` (so a
    difference inside the equivalence margin names no winner), ranked best first by
    the other cell's mean; one against a cell that may be under-tuned (its best
    learning rate at the range's edge) is inconclusive. The best cell is chosen from
    the same runs that test it; testing it against all others rather than only the
    runner-up is the step-down idea of multiple comparisons with the best (Hsu 1984,
    "Constrained simultaneous confidence intervals for multiple comparisons with the
    best", Ann. Statist.), in its Holm form.
    """
    minimize = data.direction == "minimize"
    means = {s.cell: m for s in learned(summaries) if (m := s.quality.mean) is not None}
    ranked = sorted((s for s in learned(summaries) if s.cell in means),
                    key=lambda s: means[s.cell] if minimize else -means[s.cell])  # fmt: skip
    if not ranked:
        return None
    best, rest = ranked[0], ranked[1:]
    comps = _against_top("best cell", best, rest, {s.cell: s.values for s in ranked})
    out = []
    for s, c in zip(rest, comps, strict=True):
        if c.verdict == stats.SIGNIFICANT and s.edge_lr:
            c = dataclasses.replace(
                c, verdict=stats.INCONCLUSIVE,
                reason=f"{s.cell} may be under-tuned: its best learning rate lies at the edge "
                "of the searched range (widen train.lr's range and rerun)",
            )  # fmt: skip
        out.append(c)
    return best, out


def _against_top(
    axis: str,
    top: CellSummary,
    rest: list[CellSummary],
    values: dict[str, list[float]],
    margin: float = stats.EQUIVALENCE_MARGIN,
) -> list[stats.Comparison]:
    """``top`` against each cell of ``rest`` on ``values``, one Holm family, decided."""
    return stats.adjust([stats.compare(axis, top.cell, values[top.cell], s.cell, values[s.cell],
                                       seed=i, margin=margin) for i, s in enumerate(rest)])  # fmt: skip


TOKENS_PER_SEC = "throughput/tokens_per_sec"


def versus_fastest(
    summaries: list[CellSummary],
) -> tuple[CellSummary, list[CellSummary], list[stats.Comparison]] | None:
    """The cell with the highest mean tokens/s against every other cell, on log tokens/s.

    The same rules as quality (:func:`versus_best`, one Holm family): a ratio within
    :data:`stats.SPEED_MARGIN` that TOST shows is "equally fast", and the fastest is
    only named when it is significant against every other cell. Returns (fastest, the
    others ranked by speed, their comparisons), or None with fewer than two cells
    that measured throughput. A cell needs no learning to have a speed.
    """
    runs = {s.cell: [v for r in s.rows if (v := r["metrics"].get(TOKENS_PER_SEC)) and v > 0]
            for s in summaries}  # fmt: skip
    cells = sorted((s for s in summaries if runs[s.cell]),
                   key=lambda s: -float(np.mean(runs[s.cell])))  # fmt: skip
    if len(cells) < 2:
        return None
    top, rest = cells[0], cells[1:]
    logs = {s.cell: [float(x) for x in np.log(runs[s.cell])] for s in cells}
    return top, rest, _against_top("fastest cell", top, rest, logs, math.log(stats.SPEED_MARGIN))


def _no_side_reason(summaries: list[CellSummary], axis: str, va: str, vb: str) -> str:
    """Why one side of a comparison is empty: its cells did not learn, or never finished."""
    for v in (va, vb):
        cells = [s for s in summaries if s.axes.get(axis) == v]
        if cells and all(s.learning.excluded for s in cells):
            return f"no {v} cell learned ({'; '.join(s.learning.label for s in cells)})"
    return (f"no combination of the other axes has finished runs that learned for "
            f"both {va} and {vb}")  # fmt: skip


def _matched_groups(
    summaries: list[CellSummary], axis: str, va: str, vb: str, others: list[str]
) -> tuple[tuple[list[float], list[float]], tuple[list[float], list[float]]]:
    """((centred a, centred b), (raw a, raw b)): ``va`` and ``vb`` values from matched strata.

    A stratum is one combination of the other axes holding results for both
    values; subtracting its midpoint (mean of the two sides' means) removes the
    other axes' effects from the spread, so the test sees the within-stratum
    difference only. With one stratum this is a plain shift and changes nothing.
    """
    by: dict[tuple[str, tuple], list[float]] = {}
    for s in summaries:
        if not s.values:
            continue
        stratum = tuple(s.axes.get(o, "") for o in others)
        by.setdefault((s.axes.get(axis, ""), stratum), []).extend(s.values)
    strata = sorted({st for (v, st) in by if v == va} & {st for (v, st) in by if v == vb})
    ga: list[float] = []
    gb: list[float] = []
    for st in strata:
        a, b = by[(va, st)], by[(vb, st)]
        mid = (float(np.mean(a)) + float(np.mean(b))) / 2 if len(strata) > 1 else 0.0
        ga += [x - mid for x in a]
        gb += [x - mid for x in b]
    raw_a = [x for st in strata for x in by[(va, st)]]
    raw_b = [x for st in strata for x in by[(vb, st)]]
    return (ga, gb), (raw_a, raw_b)


# ----------------------------------------------------------------------------- pareto


def pareto_front(
    quality_values: list[float], speed: list[float], minimize: bool = True
) -> list[int]:
    """Indices of points no other point beats on both quality and speed (higher speed wins)."""
    q = np.asarray(quality_values, dtype=float) * (1 if minimize else -1)
    s = np.asarray(speed, dtype=float)
    front = []
    for i in range(len(q)):
        dominated = np.any((q <= q[i]) & (s >= s[i]) & ((q < q[i]) | (s > s[i])))
        if not dominated:
            front.append(i)
    return front


# ----------------------------------------------------------------------------- importance


def importances(data: SweepData) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Optuna's parameter importances (its default evaluator) per tuning study.

    Returns (study label -> {param: importance}, notes for studies that cannot
    have one: fewer than two completed trials, or a single tuned parameter).
    """
    import optuna
    from optuna.trial import TrialState

    result: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    skipped: dict[str, list[str]] = {}  # reason -> studies
    for name, study in data.studies.items():
        if name.endswith("/seeds"):
            continue
        label = name.split("/tune/")[-1] if "/tune/" in name else name.split("/")[-1]
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(done) < 2:
            skipped.setdefault("fewer than 2 completed tuning trials", []).append(label)
            continue
        if len({p for t in done for p in t.params}) < 2:
            skipped.setdefault(
                "one tuned parameter, so its importance is 1 by definition", []
            ).append(label)
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result[label] = dict(
                    optuna.importance.get_param_importances(study, target=lambda t: t.values[0])
                )
        except (RuntimeError, ValueError) as e:
            notes.append(f"{label}: importance not computed ({type(e).__name__}: {e})")
    n_tuning = sum(not n.endswith("/seeds") for n in data.studies)
    for reason, labels in skipped.items():
        who = "every cell" if len(labels) == n_tuning > 1 else ", ".join(labels)
        notes.append(f"{who}: {reason}")
    return result, notes

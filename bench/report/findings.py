"""Plain-language findings, each sentence carrying the number that backs it and a
status (significant / equivalent / not significant / inconclusive, or ``note`` for what
is no claim; a finding that states an equivalence TOST showed is labelled equivalent,
never "not significant"), and the list of what is missing (runs still going, failed, diverged).

Order: whether anything learned, init warnings, cells excluded, the lowest
cell, the comparisons, tuning flags, speed, length generalization, missing.
Nothing is called best or a winner unless it learned and the tests of
:mod:`bench.report.stats` separate it from every other cell, beyond the equivalence
margin; nothing is called fastest unless the same tests on log tokens/s separate it
from every other cell by more than :data:`stats.SPEED_MARGIN`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.report import analysis, generalization, modelinfo, scaling, stats, tuning
from bench.report.analysis import CellSummary
from bench.report.collect import SweepData
from bench.report.learning import CHANCE_MARGIN, UNKNOWN
from bench.report.scaling import Point

NOTE = "note"


def g(x: float | None, digits: int = 4) -> str:
    """A number for prose and tables: 4 significant digits; '–' when absent."""
    if x is None or not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    if abs(x) >= max(1000, 10**digits):
        return f"{x:,.0f}"
    if abs(x) >= 10**digits:
        return f"{x:.0f}"
    if abs(x) < 1e-3:
        return f"{x:.{max(digits - 1, 0)}e}"
    return f"{x:#.{digits}g}".rstrip(".")


def ci(est: stats.Estimate) -> str:
    """'2.31 [2.29, 2.33]' or '2.31' when no interval exists."""
    if est.mean is None:
        return "–"
    if est.lo is None:
        return g(est.mean)
    return f"{g(est.mean)} [{g(est.lo)}, {g(est.hi)}]"


@dataclass(frozen=True)
class Finding:
    """One sentence with its status; ``kind`` lets the page style it (result, caution, missing)."""

    text: str
    kind: str = "result"
    status: str = NOTE
    reason: str = ""


def _label(data: SweepData, s: CellSummary) -> str:
    vals = [s.axes.get(a, "") for a in data.axes]
    return " / ".join(vals) if vals and all(vals) else s.cell


def comparison_sentence(c: stats.Comparison, metric: str, minimize: bool) -> Finding:
    """One comparison in words, with its numbers, status and reason."""
    n = f"{c.n_a} vs {c.n_b} runs"
    excl = f" Excluded (did not learn): {', '.join(c.excluded)}." if c.excluded else ""
    head = f"{c.axis}: {c.a} vs {c.b}"
    if not c.testable:
        diff = f"; the means differ by {g(c.diff, 3)}" if c.diff is not None else ""
        return Finding(f"{head}: inconclusive, {c.reason}{diff}.{excl}", "caution",
                       stats.INCONCLUSIVE, c.reason)  # fmt: skip
    assert c.diff is not None
    a_better = (c.diff < 0) == minimize
    win, lose = (c.a, c.b) if a_better else (c.b, c.a)
    sign = (-1 if minimize else 1) * (1 if a_better else -1)
    size = sign * c.diff
    lo, hi = (sorted((sign * c.lo, sign * c.hi)) if c.lo is not None and c.hi is not None
              else (None, None))  # fmt: skip
    interval = f"[{g(lo, 3)}, {g(hi, 3)}]"
    effect = f", Hedges' g = {g(abs(c.hedges_g), 2)}" if c.hedges_g is not None else ""
    stat = f"p = {g(c.p_adj, 2)}, Holm-corrected, {n}{effect}"
    if c.verdict == stats.SIGNIFICANT:
        return Finding(f"{c.axis}: {win} beats {lose} by {g(size, 3)} {metric} {interval} "
                       f"({stat}).{excl}", "result", c.verdict, c.reason)  # fmt: skip
    if c.equivalent:
        real = (" (a difference the runs confirm, too small to matter)"
                if c.p_adj is not None and c.p_adj < stats.ALPHA else "")  # fmt: skip
        return Finding(f"{head}: no meaningful difference: the difference {g(c.diff, 3)} "
                       f"{metric} {interval} lies within the equivalence margin ±{c.margin:g}"
                       f"{real} (TOST p = {g(c.p_tost_adj, 2)}, Holm-corrected; difference test "
                       f"{stat}).{excl}", "result", stats.EQUIVALENT, c.reason)  # fmt: skip
    word = "inconclusive" if c.verdict == stats.INCONCLUSIVE else "not significant"
    return Finding(f"{head}: {word}: {win} is ahead by {g(size, 3)} {metric} {interval}, "
                   f"but {c.reason} ({stat}; TOST p = {g(c.p_tost_adj, 2)}).{excl}",
                   "caution", c.verdict, c.reason)  # fmt: skip


def _suggestion(data: SweepData) -> str:
    """What to change when nothing learned."""
    base = data.spec.base
    steps = (base.get("train") or {}).get("max_steps")
    model = base.get("model") or {}
    bounds = tuning.lr_bounds(data)
    parts = [
        f"train longer (train.max_steps{f' > {steps}' if steps else ''})",
        "use a larger model (model.d_model, model.n_layers"
        + (f"; now d_model {model['d_model']}" if model.get("d_model") else "")
        + ")",
        "make the task easier (shorter task.seq_len, fewer task.n_symbols)",
        "widen train.lr's range" + (f" (now {bounds[0]:.2g} to {bounds[1]:.2g})" if bounds else ""),
    ]
    return "; ".join(parts)


def nothing_learned(data: SweepData, summaries: list[CellSummary], metric: str) -> Finding | None:
    """The first finding when no cell learned (and at least one cell's status is known)."""
    judged = [s for s in summaries if s.values]
    if not judged or any(not s.learning.excluded for s in judged):
        return None
    chances = {g(s.learning.chance) for s in judged if s.learning.chance is not None}
    ch = f" (chance: {', '.join(sorted(chances))})" if chances else ""
    return Finding(
        f"No cell learned: all {len(judged)} cells stayed within {100 * CHANCE_MARGIN:.0f}% of "
        f"chance on {metric}{ch} or collapsed, so this sweep cannot say which "
        f"{' / '.join(data.axes) or 'configuration'} is better, and names no best, fastest or "
        f"winning cell. To get a verdict: {_suggestion(data)}.",
        "caution", stats.INCONCLUSIVE, "no cell learned",
    )  # fmt: skip


def _family(comps: list[stats.Comparison]) -> str:
    return f"Holm-corrected over {len(comps)} comparison{'s' * (len(comps) > 1)}"


def _first_failure(comps: list[stats.Comparison]) -> stats.Comparison | None:
    """The first comparison (nearest rival first) that does not separate the top cell."""
    return next((c for c in comps if c.verdict != stats.SIGNIFICANT), None)


def lowest_cell(
    data: SweepData, summaries: list[CellSummary], metric: str, minimize: bool
) -> Finding | None:
    """The cell with the best mean among those that learned, and whether it is the best:
    significant against every other learned cell by the comparison rules
    (:func:`bench.report.analysis.versus_best`), or why not, from its first failure."""
    found = analysis.versus_best(data, summaries)
    if found is None:
        return None
    b, comps = found
    runs = f"{b.quality.n} {'seed runs' if b.source == 'seed runs' else 'run'}"
    if not comps:
        return Finding(f"Only {_label(data, b)} has results that learned: {metric} "
                       f"{ci(b.quality)} (mean [95% CI] over {runs}).")  # fmt: skip
    by_cell = {s.cell: s for s in summaries}
    r = by_cell[comps[0].b]
    best_word = "Lowest" if minimize else "Highest"
    text = (f"{best_word} {metric}: {_label(data, b)} with {ci(b.quality)} (mean [95% CI] over "
            f"{runs}); runner-up {_label(data, r)} {ci(r.quality)}")  # fmt: skip
    family = _family(comps)
    failed = _first_failure(comps)
    if failed is None:
        c = comps[0]
        text = text.replace(
            f"{best_word} {metric}: ", f"Best cell ({best_word.lower()} {metric}): ", 1
        )
        return Finding(f"{text}; it beats every other cell that learned (against the runner-up: "
                       f"difference {g(abs(c.diff or 0), 3)}, Welch p = {g(c.p_adj, 2)}, {family}).",
                       "result", stats.SIGNIFICANT, f"significant against every other cell ({family})")  # fmt: skip
    other = _label(data, by_cell[failed.b])
    if failed.equivalent:
        reason = (f"{_label(data, b)} and {other} are within the equivalence margin ±{failed.margin:g} "
                  f"(difference {g(abs(failed.diff or 0), 3)}, TOST p = {g(failed.p_tost_adj, 2)}, "
                  f"{family})")  # fmt: skip
        return Finding(f"{text}: no meaningful best cell, {reason}.", "caution",
                       stats.EQUIVALENT, reason)  # fmt: skip
    if failed.verdict == stats.INCONCLUSIVE:
        return Finding(f"{text}: inconclusive against {other}, {failed.reason}.", "caution",
                       stats.INCONCLUSIVE, failed.reason)  # fmt: skip
    reason = f"not separated from {other} (Welch p = {g(failed.p_adj, 2)}, {family})"
    return Finding(f"{text}: no best cell, {reason}.", "caution", stats.NOT_SIGNIFICANT, reason)


def speed(data: SweepData, summaries: list[CellSummary]) -> Finding | None:
    """Throughput per cell from repeated runs, judged like quality (:func:`analysis.versus_fastest`):
    'Fastest' only when significant, on log tokens/s, against every other cell and more
    than :data:`stats.SPEED_MARGIN` apart."""
    judged = analysis.versus_fastest(summaries)
    if judged is None:
        return None
    top, rest, comps = judged
    est = {s.cell: s.metrics["tokens/s"] for s in (top, *rest)}
    listing = "; ".join(f"{_label(data, s)} {ci(est[s.cell])}" for s in (top, *rest))
    family = _family(comps)
    margin = f"{(stats.SPEED_MARGIN - 1) * 100:.0f}%"
    failed = _first_failure(comps)
    if failed is None:
        ratio = math.exp(comps[0].diff or 0)
        return Finding(f"Fastest: {_label(data, top)} at {ci(est[top.cell])} tokens/s, "
                       f"{ratio:.2f}x the next, {_label(data, rest[0])} (every cell: {listing}); "
                       f"faster than every other cell by more "
                       f"than {margin} (Welch on log tokens/s, p = {g(comps[0].p_adj, 2)} against "
                       f"the next, {family}).", "result", stats.SIGNIFICANT,
                       f"significant against every other cell ({family})")  # fmt: skip
    other = _label(data, next(s for s in rest if s.cell == failed.b))
    ratio = math.exp(failed.diff or 0)
    if failed.equivalent:
        why = (f"{_label(data, top)} and {other} are equally fast within ±{margin} "
               f"(ratio {ratio:.3f}, TOST p = {g(failed.p_tost_adj, 2)}, {family})")  # fmt: skip
        status = stats.EQUIVALENT
    elif failed.verdict == stats.INCONCLUSIVE and failed.testable and failed.noise is not None:
        why = (f"{_label(data, top)} against {other}: the ratio {ratio:.3f} is within the "
               f"run-to-run noise (sd {100 * (math.exp(failed.noise) - 1):.1f}% of tokens/s) "
               f"and equal speed within ±{margin} is not shown")  # fmt: skip
        status = stats.INCONCLUSIVE
    elif failed.verdict == stats.INCONCLUSIVE:
        why, status = f"against {other}: {failed.reason}", stats.INCONCLUSIVE
    else:
        why = (f"{_label(data, top)} is not separated from {other} (ratio {ratio:.3f}, Welch "
               f"p = {g(failed.p_adj, 2)}, {family})")  # fmt: skip
        status = stats.NOT_SIGNIFICANT
    return Finding(f"Throughput (tokens/s, mean [95% CI] over runs): {listing}; no cell is "
                   f"clearly fastest: {why}.", "caution", status, why)  # fmt: skip


def lengths(data: SweepData, summaries: list[CellSummary]) -> list[Finding]:
    """Length generalization per cell, against the chance line at each length."""
    out = []
    for s in analysis.learned(summaries):
        pts = generalization.cell_points(data, s)
        longer = [p for p in pts if data.train_length and p.length > data.train_length]
        if not longer:
            continue
        parts = []
        for p in longer:
            scale = f"{p.length / data.train_length:g}x" if data.train_length else str(p.length)
            em = f", exact match {g(p.exact_match, 3)}" if p.exact_match is not None else ""
            where = ""
            if p.chance is not None and p.at_chance:
                worse = p.loss > p.chance * 1.1
                where = f" ({'worse than' if worse else 'at'} chance {g(p.chance, 3)})"
            elif p.chance is not None:
                where = f" (chance {g(p.chance, 3)})"
            parts.append(f"{scale}: loss {g(p.loss)}{where}{em}")
        at_chance = all(p.at_chance for p in longer if p.chance is not None) and any(
            p.chance is not None for p in longer)  # fmt: skip
        status = stats.INCONCLUSIVE if at_chance else NOTE
        out.append(Finding(f"Length generalization of {_label(data, s)}: " + "; ".join(parts)
                           + (": no better than chance at any longer length, so it does not generalize"
                              if at_chance else "") + ".",
                           "caution" if at_chance else "result", status))  # fmt: skip
    return out


def tuning_findings(data: SweepData, summaries: list[CellSummary]) -> list[Finding]:
    """Edge learning rates, pruning at one end, collapse across learning rates, winner's curse."""
    out = []
    for s in summaries:
        lab = _label(data, s)
        if (edge := s.edge_lr) is not None:
            out.append(Finding(f"{lab}: {edge}.", "caution", stats.INCONCLUSIVE, edge))
        if (end := tuning.pruned_at_one_end(data, s.cell)) is not None:
            out.append(Finding(f"{lab}: {end}.", "caution", stats.INCONCLUSIVE, end))
        if s.learning.collapse is not None:
            out.append(Finding(f"{lab}: collapsed predictions: {s.learning.collapse}.",
                               "caution", stats.INCONCLUSIVE, "collapsed predictions"))  # fmt: skip
    gaps = [s.tune_vs_rerun.gap for s in summaries if s.tune_vs_rerun.gap is not None]
    if gaps:
        mean_gap = sum(gaps) / len(gaps)
        out.append(Finding(f"Seed re-runs differ from the best tuning score by {g(mean_gap, 3)} "
                           f"on average over {len(gaps)} cells (see 'Tuning'). "
                           f"{tuning.WINNERS_CURSE}"))  # fmt: skip
    return out


def findings(
    data: SweepData, summaries: list[CellSummary], comps: list[stats.Comparison]
) -> list[Finding]:
    """The findings section, in reading order."""
    metric, direction = data.quality
    minimize = direction == "minimize"
    out: list[Finding] = []
    none = nothing_learned(data, summaries, metric)
    if none is not None:
        out.append(none)
    models = {s.cell: s.model for s in summaries}
    if (w := modelinfo.shared_init_warning(data, models)) is not None:
        out.append(Finding(w, "caution", stats.INCONCLUSIVE, "shared init"))
    for s in summaries:
        if s.learning.excluded:
            out.append(Finding(
                f"{_label(data, s)} {s.learning.label}: {s.learning.reason}. It is left out "
                "of every comparison.", "caution", stats.INCONCLUSIVE, s.learning.reason))  # fmt: skip
    unknown = [s for s in summaries if s.learning.status == UNKNOWN and s.values]
    if unknown and len(unknown) == len([s for s in summaries if s.values]):
        out.append(Finding(
            "Whether the cells learned is unknown: the runs record no chance baseline "
            "(a sweep from before baselines); compare the numbers with the task's chance "
            "level yourself.", "caution"))  # fmt: skip
    rungs = analysis.rungs(data, summaries)
    for rung, cells in rungs if none is None else []:
        if (low := lowest_cell(data, cells, metric, minimize)) is not None:
            out.append(_at(rung, low))
    out += [comparison_sentence(c, metric, minimize) for c in comps]
    out += trends(data, summaries)
    for s in summaries:
        if s.diverged:
            out.append(Finding(
                f"{_label(data, s)} diverged in {s.diverged} of {s.finished} finished trials "
                f"({100 * s.diverged / max(s.finished, 1):.0f}%).", "caution"))  # fmt: skip
    out += tuning_findings(data, summaries)
    if none is None:
        for rung, cells in rungs:
            if (sp := speed(data, cells)) is not None:
                out.append(_at(rung, sp))
        out += lengths(data, summaries)
    missing = missing_items(data)
    if missing:
        out.append(Finding(
            f"{len(missing)} item(s) are missing or unfinished (see 'Missing and failed'); "
            "the numbers above use only finished runs.", "missing"))  # fmt: skip
    return out


def _at(rung: str, f: Finding) -> Finding:
    """A rung's finding, its size named first (no change without a ladder)."""
    return dataclasses.replace(f, text=f"At {rung}: {f.text}") if rung else f


def trends(data: SweepData, summaries: list[CellSummary]) -> list[Finding]:
    """Across a ladder's rungs, per compared pair (matched on the other compared axes):
    whether the gap grows, shrinks, stays or flips with size (:mod:`bench.report.scaling`)."""
    if not data.ladder:
        return []
    metric, _ = data.quality
    compared = [a for a in data.axes if a not in data.ladder]
    kept = [s for s in analysis.learned(summaries) if s.params]
    # A rung's size is the geometric mean of its cells' parameter counts: the cells of one
    # rung differ by a few parameters (Pre-LN's final norm), and both sides of a gap must
    # sit at one size.
    size = {}
    for _, cells in analysis.rungs(data, kept):
        size.update({s.cell: 10 ** float(np.mean([np.log10(c.params or 1) for c in cells]))
                     for s in cells})  # fmt: skip
    out = []
    for axis in compared:
        others = [a for a in compared if a != axis]
        for va, vb in itertools.combinations(analysis.axis_values(data, axis), 2):
            for stratum in sorted({tuple(s.axes.get(o, "") for o in others) for s in kept}):
                t = scaling.trend(
                    _points(kept, size, axis, va, others, stratum),
                    _points(kept, size, axis, vb, others, stratum),
                )
                where = (
                    f" ({', '.join(f'{o}={v}' for o, v in zip(others, stratum, strict=True))})"
                    if others
                    else ""
                )
                text = (f"{axis}: {va} minus {vb} in {metric}{where}, as the model grows: "
                        f"{t.verdict}, {t.reason}.")  # fmt: skip
                far = data.spec.scale.extrapolate_to if data.spec.scale is not None else None
                if far and (at := t.gap_at(far)) is not None:
                    text += (f" Extrapolated to {far:.3g} parameters: {at[0]:+.3g} "
                             f"[{at[1]:+.3g}, {at[2]:+.3g}], assuming the gap stays linear in "
                             "log parameters past the largest rung, which nothing here "
                             "measured.")  # fmt: skip
                text += _transfer_caveat(data)
                kind = "result" if t.verdict != scaling.INCONCLUSIVE else "caution"
                out.append(Finding(text, kind, t.verdict, t.reason))
    return out


def _transfer_caveat(data: SweepData) -> str:
    """What a trend means when only the smallest rung was tuned ("" when every rung was)."""
    scale = data.spec.scale
    if scale is None or scale.tune == "every":
        return ""
    param = (data.spec.base.get("train") or {}).get("parameterization", "standard")
    if param == "mup":
        return (" Larger rungs re-ran the smallest rung's tuned settings (µP transfer): "
                "the trend holds for transferred settings, not for each rung tuned on its own.")  # fmt: skip
    return (" Larger rungs re-ran the smallest rung's tuned settings under standard "
            "parameterization, where the best learning rate moves with width: part of this "
            "trend may be mis-tuning, not the architecture choice.")  # fmt: skip


def _points(
    kept: list[CellSummary],
    size: dict[str, float],
    axis: str,
    value: str,
    others: list[str],
    stratum: tuple[str, ...],
) -> list[Point]:
    """(rung size, value) of every run of the cells with ``axis=value`` in one stratum."""
    return [(size[s.cell], v) for s in kept
            if s.axes.get(axis) == value and tuple(s.axes.get(o, "") for o in others) == stratum
            for v in s.values]  # fmt: skip


def missing_items(data: SweepData) -> list[dict[str, Any]]:
    """Trials that did not finish normally, finished runs without summary.json,
    and planned trials not started yet. A pruned trial is not missing: the pruner
    stopped it on purpose (the report lists those under 'Pruned tuning trials')."""
    out = []
    for r in data.rows:
        if r["status"] not in ("completed", "pruned"):
            out.append({"cell": r["cell"], "phase": r["phase"], "trial": r["trial"],
                        "status": r["status"], "reason": r["reason"] or "–"})  # fmt: skip
        elif r["run_dir"] and not r["has_summary"]:
            out.append({"cell": r["cell"], "phase": r["phase"], "trial": r["trial"],
                        "status": "no summary.json", "reason": f"{r['run_dir']} has no summary.json"})  # fmt: skip
    planned = data.spec.tune.trials if data.spec.tune is not None else 0
    seeds = data.spec.seeds or 0
    source = data.spec.tuning_source() if data.spec.compare else {}
    for cell in data.cells if data.spec.compare else []:
        rows = [r for r in data.rows if r["cell"] == cell]
        n_tune = len({r["trial"] for r in rows if r["phase"] == "tune"})
        if planned and n_tune < planned and source.get(cell, cell) == cell:
            out.append({"cell": cell, "phase": "tune", "trial": "–", "status": "not started",
                        "reason": f"{n_tune} of {planned} tuning trials exist"})  # fmt: skip
        n_seed = sum(r["phase"] == "seed" and r["status"] == "completed" for r in rows)
        if seeds and n_seed < seeds:
            out.append({"cell": cell, "phase": "seed", "trial": "–", "status": "incomplete",
                        "reason": f"{n_seed} of {seeds} seed runs finished"})  # fmt: skip
    return out

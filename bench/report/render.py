"""HTML and Markdown from one context, through jinja2 templates (package data).

HTML is autoescaped (every sweep, cell, variant name and reason is text, never
markup) and self-contained: inline CSS, figures as base64 PNG data URIs, a
Content-Security-Policy that forbids scripts and any request. Markdown is real
Markdown (``>=`` stays ``>=``): only what would start an HTML tag or entity, an
emphasis marker or a table pipe in a user-provided string is backslash-escaped.
"""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path
from typing import Any

import jinja2

from bench import redact
from bench.report import analysis, learning, stats, tuning
from bench.report.analysis import CellSummary
from bench.report.bottom_line import bottom_line
from bench.report.collect import SweepData, manifests
from bench.report.diagnoses import diagnosis_rows
from bench.report.figures import RenderedFigure, label
from bench.report.findings import Finding, ci, g

METHOD = (
    "Per cell: mean over the seed re-runs of the cell's best configuration (when the "
    "sweep has none yet: its best tuning trial, n = 1). Comparisons pool over the other "
    "axes within matched cells: only combinations of the other axes where both values "
    "have results enter, and each run is centred on its combination's midpoint, so the "
    "difference and its test are within-combination (mean a and mean b are the raw "
    "pooled means). Cells that did not learn (most runs not 'learned', or a mean within "
    f"{100 * learning.CHANCE_MARGIN:.0f}% of chance, or collapsed predictions) enter no "
    f"comparison. Status of a comparison: inconclusive with fewer than {stats.MIN_RUNS} runs "
    "per side, without seed variation, or when the difference is below the seed noise floor "
    "(pooled seed sd) and not shown equivalent; 'no meaningful difference' when TOST "
    f"(Holm-adjusted p < {stats.ALPHA}) shows the difference within "
    f"±{stats.EQUIVALENCE_MARGIN:g} (EQUIVALENCE_MARGIN, in units of the quality metric), "
    "even if the difference test also separates them; otherwise significant when the "
    f"Holm-adjusted Welch p < {stats.ALPHA}. The best cell is named only when it is "
    "significant, by the same rules, against every other cell that learned (one Holm "
    "family). The fastest cell is judged the same way on log tokens/s, with cells within "
    f"±{(stats.SPEED_MARGIN - 1) * 100:.0f}% of each other equally fast (SPEED_MARGIN: "
    "the machine's own load moves tokens/s by about that much between sweeps). Bootstrap "
    "intervals (scipy.stats.bootstrap, BCa) from few seeds (n < 5) are too narrow: read "
    "them as rough."
)


def md_text(text: Any) -> str:
    """Escape a string for Markdown prose (CommonMark backslash escapes, no HTML entities):
    a ``<`` that could open a tag, a ``&`` that could start an entity, emphasis markers."""
    s = re.sub(r"([\\`*]|\](?=\())", r"\\\1", str(text))
    s = re.sub(r"<(?=[A-Za-z/!?])", r"\\<", s)
    return re.sub(r"&(?=#?\w+;)", r"\\&", s)


def md_cell(text: Any) -> str:
    return md_text(text).replace("|", "\\|").replace("\n", " ")


def environment(package: str = "bench.report") -> jinja2.Environment:
    """Templates from ``package``'s ``templates/``; autoescape for ``*.html.j2`` only."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(package, "templates"),
        autoescape=lambda name: bool(name and name.endswith(".html.j2")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_text
    env.filters["cell"] = md_cell
    return env


def _fence(text: str) -> str:
    """Longer than any backtick run inside, so the text cannot close the code block."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


# ----------------------------------------------------------------------------- tables


def cell_table(
    data: SweepData, summaries: list[CellSummary]
) -> tuple[list[str], list[list[str]], list[str]]:
    """(header, rows, metrics measured nowhere) of the per-cell table.

    A metric no run of the sweep measured gets no column (it is named in the
    note instead); a metric some cells lack shows '–' in those cells. "best lr"
    is the learning rate the seed runs used (their config.yaml); "(tuning)"
    marks a cell without seed runs, judged on its best tuning trial's lr.
    """
    metric, _ = data.quality
    candidates = [*analysis.length_keys(data), *analysis.TABLE_METRICS]
    labels = [lab for lab in candidates if any(s.metrics[lab].mean is not None for s in summaries)]
    unmeasured = [
        lab for lab in ("loss@2x", "loss@4x", *analysis.TABLE_METRICS) if lab not in labels
    ]
    header = [*(data.axes or ["cell"]), "runs", f"{metric} [95% CI]", "chance", "learned",
              "best lr", *labels, "diverged", "init", "embed scale", "params"]  # fmt: skip
    rows = []
    for s in summaries:
        lead = [s.axes.get(a, "") for a in data.axes] if data.axes else [s.cell]
        div = f"{s.diverged}/{s.finished}" if s.finished else "–"
        rows.append([
            *lead,
            _runs_cell(s),
            ci(s.quality),
            g(s.learning.chance),
            s.learning.label,
            _lr_cell(s),
            *(_metric_cell(lab, s.metrics[lab]) for lab in labels),
            div,
            s.init.get("init", "unknown"),
            s.init.get("embed_scale", "unknown"),
            f"{s.params:,}" if s.params else "–",
        ])  # fmt: skip
    return header, rows, unmeasured


def _lr_cell(s: CellSummary) -> str:
    if s.seed_lrs:
        return ", ".join(f"{v:.2g}" for v in sorted(set(s.seed_lrs)))
    return f"{s.lr:.2g} (tuning)" if s.lr is not None else "–"


def _runs_cell(s: CellSummary) -> str:
    """'3' seed runs; '1*' for a cell judged on its best tuning trial; '0' with none."""
    return {"seed runs": str(s.quality.n), "best tuning trial": "1*"}.get(s.source, "0")


def _metric_cell(lab: str, est: stats.Estimate) -> str:
    if est.mean is None:
        return "–"
    if lab == "MFU":
        return f"{100 * est.mean:.2f}%"
    if lab == "tokens/s" and est.lo is not None:
        return ci(est)
    return g(est.mean)


def comparison_table(comps: list[stats.Comparison]) -> tuple[list[str], list[list[str]]]:
    header = ["axis", "a", "b", "n a", "n b", "mean a", "mean b", "difference [95% CI]",
              "Hedges' g", "p", "p (Holm)", "TOST p (Holm)", "reason", "status"]  # fmt: skip
    rows = []
    for c in comps:
        diff = g(c.diff, 3) if c.lo is None else f"{g(c.diff, 3)} [{g(c.lo, 3)}, {g(c.hi, 3)}]"
        rows.append([c.axis, c.a, c.b, str(c.n_a), str(c.n_b), g(c.mean_a), g(c.mean_b), diff,
                     g(c.hedges_g, 2), g(c.p, 2), g(c.p_adj, 2), g(c.p_tost_adj, 2), c.reason,
                     stats.label(c)])  # fmt: skip
    return header, rows


def tuning_table(
    summaries: list[CellSummary], data: SweepData
) -> tuple[list[str], list[list[str]]]:
    """Per cell: best tuning score and its lr, the seed-rerun mean, their gap, the seed lr."""
    metric, _ = data.quality
    header = [*(data.axes or ["cell"]), "tuning trials", f"best tuning {metric}", "at lr",
              f"seed-rerun mean {metric}", "re-runs", "re-run − tuning", "seed lr", "flags"]  # fmt: skip
    rows = []
    for s in summaries:
        lead = [s.axes.get(a, "") for a in data.axes] if data.axes else [s.cell]
        t = s.tune_vs_rerun
        n_tune = len(tuning.tuning_rows(data, s.cell))
        flags = [f for f in (s.edge_lr,
                             tuning.pruned_at_one_end(data, s.cell)) if f]  # fmt: skip
        if s.learning.collapse:
            flags.append(f"collapsed predictions: {s.learning.collapse}")
        rows.append([*lead, str(n_tune), g(t.tuned), f"{s.tune_best_lr:.2g}" if s.tune_best_lr else "–",
                     g(t.rerun), str(t.n_rerun), g(t.gap, 3),
                     ", ".join(f"{v:.2g}" for v in sorted(set(s.seed_lrs))) or "–",
                     "; ".join(flags) or "–"])  # fmt: skip
    return header, rows


def pruned_table(data: SweepData) -> list[list[str]]:
    """Every pruned tuning trial: cell, trial, lr, step, reason."""
    return [[p["cell"], str(p["trial"]), f"{p['lr']:.2g}" if p["lr"] else "–",
             str(p["step"]) if p["step"] is not None else "–", p["reason"]]
            for p in tuning.pruned(data)]  # fmt: skip


def reproducibility(data: SweepData) -> tuple[list[tuple[str, str]], str]:
    """(key/value rows, the commands that reproduce the sweep and this report)."""
    from bench.sweeps.layout import SPEC_YAML

    ms = manifests(data)

    def distinct(key: str) -> str:
        vals = sorted({str(m.get(key)) for m in ms if m.get(key) is not None})
        return ", ".join(vals) if vals else "not recorded"

    packages: dict[str, set[str]] = {}
    for m in ms:
        for k, v in (m.get("packages") or {}).items():
            packages.setdefault(k, set()).add(str(v))
    pk = (
        ", ".join(f"{k} {'/'.join(sorted(v))}" for k, v in sorted(packages.items()))
        or "not recorded"
    )
    seeds = sorted({str(r["seed"]) for r in data.rows if r["phase"] == "seed" and r["seed"] != ""})
    rows = [
        ("sweep", data.name),
        ("sweep directory", str(data.dir)),
        ("storage", redact.text(str(data.meta.get("storage", "")))),
        ("created", str(data.meta.get("created", ""))),
        ("original command", redact.text(str(data.meta.get("command", "")))),
        ("git sha", distinct("git_sha")),
        ("packages", pk),
        ("python", distinct("python")),
        ("device", distinct("device")),
        ("processor", distinct("processor")),
        ("cpu count", distinct("cpu_count")),
        ("platform", distinct("platform")),
        ("seeds (seed phase)", ", ".join(seeds) or "none"),
        ("sampler seed", str(data.spec.seed)),
    ]
    commands = (
        f"bench sweep {data.dir / SPEC_YAML} --out runs/sweeps/{data.name}\n"
        f"bench report runs/sweeps/{data.name} --out reports/{data.name}"
    )
    return rows, commands


# ----------------------------------------------------------------------------- pages


def context(
    data: SweepData,
    summaries: list[CellSummary],
    comps: list[stats.Comparison],
    found: list[Finding],
    figures: list[RenderedFigure],
    missing: list[dict[str, Any]],
) -> dict[str, Any]:
    """Everything both templates show."""
    metric, direction = data.quality
    cell_header, cell_rows, unmeasured = cell_table(data, summaries)
    comp_header, comp_rows = comparison_table(comps)
    tune_header, tune_rows = tuning_table(summaries, data)
    repro, commands = reproducibility(data)
    return {
        "name": data.name,
        "description": data.spec.description,
        "mode": str(data.meta.get("mode", "compare")),
        "n_runs": len(data.rows),
        "n_studies": len(data.studies),
        "generated": time.strftime("%Y-%m-%d %H:%M %Z"),
        "sweep_dir": str(data.dir),
        "bottom_line": " ".join(bottom_line(data, summaries, comps)),
        "findings": found,
        "metric": metric,
        "direction": "lower is better" if direction == "minimize" else "higher is better",
        "method": METHOD,
        "cell_header": cell_header,
        "cell_rows": cell_rows,
        "n_label_cols": len(data.axes or ["cell"]),
        "unmeasured": unmeasured,
        "comp_header": comp_header,
        "comp_rows": comp_rows,
        "alpha": stats.ALPHA,
        "min_runs": stats.MIN_RUNS,
        "margin": stats.EQUIVALENCE_MARGIN,
        "chance_margin": learning.CHANCE_MARGIN,
        "tuning_method": tuning.method(data),
        "lr_bounds": _bounds_text(data),
        "tune_header": tune_header,
        "tune_rows": tune_rows,
        "winners_curse": tuning.WINNERS_CURSE,
        "pruned_rows": pruned_table(data),
        "figures": figures,
        "missing": missing,
        "repro": repro,
        "commands": commands,
        "spec_text": data.spec_text.rstrip(),
        "labels": {s.cell: label(data, s) for s in summaries},
        "diagnoses": diagnosis_rows(data, summaries),
    }


def _bounds_text(data: SweepData) -> str:
    b = tuning.lr_bounds(data)
    return f"{b[0]:.2g} to {b[1]:.2g}" if b else "not tuned"


def _figure_entries(figures: list[RenderedFigure], embed: bool) -> list[dict[str, Any]]:
    out = []
    for f in figures:
        entry = {
            "title": f.title,
            "caption": f.caption,
            "note": f.note,
            "file": None,
            "data_uri": None,
        }
        if f.path is not None:
            entry["file"] = f"figures/{f.path.name}"
            if embed:
                b64 = base64.b64encode(f.path.read_bytes()).decode("ascii")
                entry["data_uri"] = f"data:image/png;base64,{b64}"
        out.append(entry)
    return out


def render_html(ctx: dict[str, Any], figures: list[RenderedFigure]) -> str:
    """The self-contained page (figures embedded)."""
    tpl = environment().get_template("report.html.j2")
    return tpl.render({**ctx, "figures": _figure_entries(figures, embed=True)})


def render_markdown(ctx: dict[str, Any], figures: list[RenderedFigure]) -> str:
    """The Markdown report (figures as relative links into figures/)."""
    tpl = environment().get_template("report.md.j2")
    fence = _fence(ctx["spec_text"] + ctx["commands"])
    return tpl.render({**ctx, "figures": _figure_entries(figures, embed=False), "fence": fence})


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path

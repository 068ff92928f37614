"""The claims report: one section per claim, a verdict table first.

``OUT/index.html`` (self-contained: figures embedded, no scripts), ``OUT/report.md``
(figures linked from ``OUT/figures/``), ``OUT/verdicts.json`` (read by the reports of
the other seed offsets: :mod:`bench.claims.offsets`). Written into a temporary directory and
swapped into place, so a reader never sees half a report.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any

import jinja2

from bench.claims import offsets
from bench.claims import spec as cspec
from bench.claims.judge import ClaimResult, judge_claim
from bench.claims.prereg import SHORT
from bench.claims.rules import INCONCLUSIVE

TITLE = "Published claims tested at small scale"
HOW = (
    "Each claim's sweep is an ordinary compare sweep; the runs counted are each cell's "
    "seed runs (plus its single run when nothing is tuned), and each replicate draws its "
    "own task data. What a diverged run counts as is stated per metric. Each test is a "
    "Welch-Satterthwaite t-interval of a contrast of cell means, Bonferroni-adjusted over "
    "the claim's evidence and control tests, judged against the smallest effect of "
    "interest (SESOI) the claim file names: it holds when the interval clears the SESOI "
    "in the paper's direction, fails when it lies within +-SESOI or on the wrong side, "
    "and is unclear otherwise, or when the cells compared all sit at the task's best "
    "value (ceiling) or at chance (floor). A claim is consistent with the paper at this "
    "scale when every evidence test holds, not reproduced at this scale when one fails, "
    "and inconclusive otherwise, or when a precondition is not met, a control fails or a "
    "sanity check (a property that holds by construction, never counted as evidence) "
    "fails. The rules were fixed in the claim files before the runs they judge: each "
    "file's hash is recorded when its runs launch, and a file changed after its runs is "
    "not judged on them."
)


def write_report(
    claims: list[cspec.ClaimSpec],
    root: Path,
    target: Path,
    budget: str,
    seed_offset: int,
    storage: str | None,
) -> Path:
    """Judge every claim from the sweeps under ``root`` and write the report to ``target``."""
    import matplotlib

    matplotlib.use("Agg")
    from bench.report import swap_into_place

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        results = [judge_claim(c, root, tmp / "figures", storage) for c in claims]
        records = offsets.verdict_records(results)
        offsets.write_verdicts(records, budget, seed_offset, tmp / offsets.VERDICTS)
        ctx = context(results, budget, seed_offset, root)
        others = offsets.sibling_verdicts(target, budget, seed_offset)
        ctx["across"] = offsets.agreement(records, seed_offset, others)
        env = _environment()
        (tmp / "report.md").write_text(env.get_template("claims.md.j2").render(ctx))
        ctx_html = {**ctx, "sections": [_embed(s) for s in ctx["sections"]]}
        (tmp / "index.html").write_text(env.get_template("claims.html.j2").render(ctx_html))
        os.chmod(tmp, 0o755)
        swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target / "index.html"


def context(results: list[ClaimResult], budget: str, offset: int, root: Path) -> dict[str, Any]:
    sections = [_section(r) for r in results]
    total = sum(r.seconds or 0.0 for r in results if r.claim.sweep is not None)
    return {
        "title": TITLE,
        "subtitle": subtitle([r.claim for r in results], budget),
        "budget": budget,
        "seed_offset": offset,
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "runs_root": str(root),
        "total_minutes": f"{total / 60:.1f}" if total else "",
        "how": HOW,
        "sections": sections,
    }


def subtitle(claims: list[cspec.ClaimSpec], budget: str) -> str:
    """What was tested, in one line: how many claims, the model sizes, the hardware."""
    widths: set[int] = set()
    depths: set[int] = set()
    for c in claims:
        model = ((c.sweep or {}).get("base") or {}).get("model") or {}
        compare = (c.sweep or {}).get("compare") or {}
        ladder = ((c.sweep or {}).get("scale") or {}).get("ladder") or {}
        for key, into in (("d_model", widths), ("n_layers", depths)):
            values = compare.get(f"model.{key}") or ladder.get(f"model.{key}")
            into.update(int(v) for v in values or [model.get(key, 0)])
    widths.discard(0)
    depths.discard(0)

    def span(xs: set[int]) -> str:
        return "?" if not xs else f"{min(xs)}" if len(xs) == 1 else f"{min(xs)}-{max(xs)}"

    n = len(claims)
    return (
        f"{n} published claim{'s' if n != 1 else ''} about transformer architecture choices, "
        f"each tested with models of d_model {span(widths)} and {span(depths)} layers, from "
        f"scratch on CPU ({budget} budget)"
    )


def _section(r: ClaimResult) -> dict[str, Any]:
    c = r.claim
    v = r.verdict
    tests = []
    for t in v.tests if v else []:
        tests.append(
            {
                "says": t.spec.says or t.spec.kind,
                "role": t.role,
                "sesoi": _sesoi(t.spec),
                "why": " ".join(t.spec.why.split()),
                "effect": "" if t.effect is None else f"{t.effect:+.3g}",
                "interval": t.interval or t.reason,
                "level": f"{100 * t.level:.3g}%",
                "needs": t.threshold,
                "status": t.status,
                "reason": t.reason,
                "runs": ", ".join(f"{k}: {n}" for k, n in t.sizes.items()),
            }
        )
    first = next((t for t in tests if t["role"] == "evidence"), tests[0] if tests else {})
    reg = r.registration
    return {
        "id": c.id,
        "title": c.title,
        "citation": c.citation,
        "url": c.url,
        "statement": " ".join(c.statement.split()),
        "scale": " ".join(c.scale.split()),
        "caveat": " ".join(c.caveat.split()),
        "version": c.version,
        "versions": [
            {
                "version": e.version,
                "offsets": ", ".join(map(str, e.offsets)),
                "why": " ".join(e.why.split()),
            }
            for e in c.versions
        ],
        "sha": reg.sha256[:SHORT] if reg else "",
        "commit": reg.commit[:SHORT] if reg else "",
        "launched": reg.launched if reg else "",
        "unregistered": reg is not None and not reg.launched and not r.error,
        "history": " ".join(c.history.split()),
        "verdict_notes": list(v.notes) if v else [],
        "policies": [
            {"metric": m.label or name, "policy": r.samples[name].policy}
            for name, m in c.metrics.items()
            if name in r.samples and r.samples[name].policy
        ],
        "status": v.status if v else INCONCLUSIVE,
        "reason": v.reason if v else f"no runs: {r.error}",
        "effect": f"{first['effect']} {first['interval']}".strip() if first else "",
        "tests": tests,
        "ran": r.ran,
        "shares": c.sweep_of or "",
        "minutes": f"{r.seconds / 60:.1f}" if r.seconds and c.sweep is not None else "",
        "figures": [{"file": f"figures/{p.name}", "path": p} for p in r.figures],
        "not_drawn": r.not_drawn,
        "sizes": _sizes(r),
        "notes": r.notes[:20]
        + ([f"... and {len(r.notes) - 20} more"] if len(r.notes) > 20 else []),
    }


def _sizes(r: ClaimResult) -> dict[str, Any] | None:
    """Each rung's verdict and each test's trend with size (None without a ladder)."""
    if r.sizes is None:
        return None

    def effect(e: float | None, lo: float | None, hi: float | None) -> str:
        return "no interval" if e is None else f"{e:+.3g} [{lo:+.3g}, {hi:+.3g}]"

    return {
        "largest": r.sizes.rungs[-1].name if r.sizes.rungs else "",
        "rungs": [
            {"name": g.name, "params": f"{g.params:,.0f}", "status": g.verdict.status,
             "reason": g.verdict.reason}
            for g in r.sizes.rungs
        ],
        "trends": [
            {
                "says": t.test.says or t.test.kind,
                "effects": "; ".join(f"{n}: {effect(e, lo, hi)}" for n, e, lo, hi in t.effects),
                "verdict": t.verdict,
                "reason": t.reason,
            }
            for t in r.sizes.trends
        ],
    }  # fmt: skip


def _sesoi(t: Any) -> str:
    parts = []
    if t.sesoi is not None:
        parts.append(f"SESOI {t.sesoi:g}")
    if t.value is not None:
        parts.append(f"value {t.value:g}")
    return ", ".join(parts)


def _embed(section: dict[str, Any]) -> dict[str, Any]:
    figs = []
    for f in section["figures"]:
        b64 = base64.b64encode(Path(f["path"]).read_bytes()).decode("ascii")
        figs.append({**f, "data_uri": f"data:image/png;base64,{b64}"})
    return {**section, "figures": figs}


def _environment() -> jinja2.Environment:
    from bench.report.render import environment

    return environment("bench.claims")

"""``bench report SWEEP_DIR``: collect -> statistics -> figures -> HTML and Markdown.

:func:`build_report` writes ``index.html`` (self-contained), ``report.md``,
``figures/*.png`` and ``runs.csv`` into ``reports/<sweep name>/`` (or ``out``).
It builds everything in a temporary sibling directory and renames it into
place at the end, so a half-written report never looks finished.
Bad input (not a sweep, no trials, unreadable storage) raises
:class:`bench.config.ConfigError` with one line.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bench.config import ConfigError

__all__ = ["build_report"]


def build_report(
    sweep_dir: str | Path,
    out: str | Path | None = None,
    *,
    wandb: bool = False,
    wandb_mode: str | None = None,
    storage: str | None = None,
) -> Path:
    """Write the report of the sweep in ``sweep_dir``; returns the report directory.

    ``wandb``: the CLI's ``--wandb``: log online when logged in and publish a W&B
    Report (needs ``wandb-workspaces``). ``wandb_mode``: force offline / online /
    disabled for the report's W&B run (default: offline, disabled when the
    sweep's spec disables tracking). ``storage``: the storage URL when sweep.json's
    cannot be used (an RDB URL is recorded there with its password hidden).
    """
    import matplotlib

    matplotlib.use("Agg")  # never open a window, even if pyplot is imported later
    from bench.report import analysis, findings, publish, render
    from bench.report.collect import flat_rows, load_sweep, runs_csv
    from bench.report.figures import draw_all

    data = load_sweep(sweep_dir, storage)
    target = Path(out) if out is not None else Path("reports") / data.name
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--out {target}: exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        summaries = analysis.cell_summaries(data)
        comps = analysis.comparisons(data, summaries)
        found = findings.findings(data, summaries, comps)
        missing = findings.missing_items(data)
        figures = draw_all(data, summaries, tmp / "figures")
        ctx = render.context(data, summaries, comps, found, figures, missing)
        (tmp / "runs.csv").write_text(runs_csv(data))
        render.write(tmp / "report.md", render.render_markdown(ctx, figures))
        render.write(tmp / "index.html", render.render_html(ctx, figures))

        mode = publish.resolve_mode(data, wandb, wandb_mode)
        cols, rows = flat_rows(data)
        tables = {
            "runs": (cols, [[r[c] for c in cols] for r in rows]),
            "cells": (ctx["cell_header"], ctx["cell_rows"]),
            "comparisons": (ctx["comp_header"], ctx["comp_rows"]),
        }
        texts = [f.text for f in found]
        publish.log_report(data, mode, figures, tables, texts, target, into_sweep_run=wandb)
        if wandb and mode == "online":
            publish.publish_wandb_report(data, texts, data.quality[0])
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a report is for everyone
        swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def swap_into_place(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``, replacing an older report there."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)

"""``bench compare RUN_OR_SWEEP ...``: runs side by side, from their files.

Each run directory is one column; a sweep directory gives one column per cell,
made of the cell's seed re-runs (its best tuning run when it has none). The
terminal table shows only the config keys whose values differ between the
columns, then the final and best metrics (the mean over a column's runs, with
the spread when it has several). One figure (``compare.png``) draws every run's
training and validation loss against the step, and each whole-model diagnostic
every column logged (gradient norm, update ratio, noise scale, Hessian, ...).

Runs may come from different sweeps, or none. No torch or Lightning.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.config import ConfigError
from bench.listing import Entry, read_run, read_sweep
from bench.run import Run
from bench.sweeps.layout import is_sweep_dir

# Final and best metrics, in this order, when any column has them.
METRICS = (
    "train/loss",
    "val/loss",
    "best/val/loss",
    "val/acc",
    "best/val/acc",
    "val/acc_nontrivial",
    "val/exact_match",
    "best/val/exact_match",
    "throughput/tokens_per_sec",
)
CURVES = ("train/loss", "val/loss")
DIAGNOSTIC_PREFIXES = ("cond/", "hessian/", "throughput/tokens_per_sec", "landscape/")
MAX_DIAGNOSTIC_PANELS = 6
PREFERRED_DIAGNOSTICS = (  # drawn first when shared: what the report also looks at
    "cond/grad_norm_total",
    "cond/update_ratio_total",
    "hessian/lambda_max",
    "cond/noise_scale",
    "cond/grad_norm_ratio_first_last",
    "throughput/tokens_per_sec",
)
SKIP_CONFIG = ("tracking.", "train.threads")  # where records go, not what was trained


@dataclass
class Column:
    """One column of the comparison: a run, or a sweep cell's runs."""

    label: str
    runs: list[Entry]
    histories: list[list[dict[str, float]]] = field(default_factory=list)
    finals: list[dict[str, float]] = field(default_factory=list)  # summary.json metrics per run

    def config(self) -> dict[str, Any]:
        """Config keys every run of the column agrees on; the others say ``(varies)``."""
        keys = {k for r in self.runs for k in r.fields}
        out = {}
        for k in sorted(keys):
            if k.startswith(SKIP_CONFIG):
                continue
            values = {_text(r.fields.get(k)) for r in self.runs}
            out[k] = values.pop() if len(values) == 1 else "(varies)"
        return out

    def status(self) -> str:
        """``completed`` / ``stopped at 50 of 100`` (each distinct status once, with its count)."""
        parts = []
        for r in self.runs:
            text = r.status
            total = r.fields.get("train.max_steps")
            if r.status != "completed" and r.steps is not None:
                text += f" at {r.steps}" + (f" of {total}" if total else "")
            parts.append(text)
        counts = {p: parts.count(p) for p in parts}
        return ", ".join(p if n == 1 else f"{n}x {p}" for p, n in counts.items())

    def metric(self, key: str) -> list[float]:
        return [m[key] for m in self.finals if key in m and math.isfinite(m[key])]


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ",".join(_text(x) for x in v) + "]"
    return "None" if v is None else str(v)


def final_metrics(run_dir: Path) -> dict[str, float]:
    """The run's final metrics from summary.json ({} when it has none; NaN kept: a
    diverged run shows as one)."""
    metrics = Run.load(run_dir).summary.get("metrics")
    if not isinstance(metrics, dict):
        return {}
    return {
        k: float(v)
        for k, v in (metrics or {}).items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _cell_columns(sweep_dir: Path) -> list[Column]:
    """One column per cell of a sweep: its seed runs, else its best completed tuning run."""
    sweep, runs = read_sweep(sweep_dir)
    maximize = False
    by_cell: dict[str, dict[str, list[Entry]]] = {}
    for r in runs:
        if r.status != "completed":
            continue
        cell = str(r.fields.get("tracking.meta.cell", "?"))
        phase = str(r.fields.get("tracking.meta.phase", "tune"))
        by_cell.setdefault(cell, {}).setdefault("seed" if phase == "seed" else "tune", []).append(r)
    columns = []
    for cell, phases in by_cell.items():
        chosen = phases.get("seed")
        if not chosen:
            tuned = [r for r in phases.get("tune", []) if r.best is not None]
            if not tuned:
                continue
            pick = max if maximize else min
            chosen = [pick(tuned, key=lambda r: r.best if r.best is not None else math.nan)]
        columns.append(Column(f"{sweep.name}:{cell}", chosen))
    if not columns:
        raise ConfigError(f"{sweep_dir}: sweep '{sweep.name}' has no completed run to compare yet")
    return columns


def load_columns(targets: list[str]) -> list[Column]:
    """The columns of ``bench compare``: a run dir is one, a sweep dir one per cell."""
    columns: list[Column] = []
    for t in targets:
        p = Path(t)
        if is_sweep_dir(p):
            columns += _cell_columns(p)
        elif Run.is_run_dir(p):
            columns.append(Column(p.name, [read_run(p)]))
        else:
            raise ConfigError(
                f"{t}: neither a run directory (config.yaml + status.json) nor a sweep directory "
                "(sweep.json)"
            )
    if len(columns) < 2:
        raise ConfigError(
            "bench compare needs at least two runs or sweep cells; got "
            f"{len(columns)} ({', '.join(c.label for c in columns) or 'none'})"
        )
    prefixes = {c.label.partition(":")[0] for c in columns if ":" in c.label}
    if len(prefixes) == 1 and all(":" in c.label for c in columns):  # one sweep: its cells
        for c in columns:
            c.label = c.label.partition(":")[2]
    labels = [c.label for c in columns]
    for c in columns:  # the same run dir name in two sweeps: say which is which
        if labels.count(c.label) > 1:
            c.label = f"{c.runs[0].path.parent.parent.name}/{c.label}"
    for c in columns:
        c.histories = [Run(r.path).history() for r in c.runs]
        c.finals = [final_metrics(r.path) for r in c.runs]
    return columns


def config_differences(columns: list[Column]) -> dict[str, list[str]]:
    """key -> each column's value, for keys whose values are not all the same."""
    configs = [c.config() for c in columns]
    keys = sorted({k for cfg in configs for k in cfg})
    out = {}
    for k in keys:
        values = [cfg.get(k, "-") for cfg in configs]
        if len(set(values)) > 1:
            out[k] = values
    return out


def _summary(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {statistics.stdev(values):.2g} (n={len(values)})"


def metric_rows(columns: list[Column]) -> list[tuple[str, list[str]]]:
    keys = [k for k in METRICS if any(c.metric(k) for c in columns)]
    return [(k, [_summary(c.metric(k)) for c in columns]) for k in keys]


def shared_diagnostics(columns: list[Column]) -> list[str]:
    """Whole-model diagnostic series (no per-layer keys) that every column logged."""
    per_column = []
    for c in columns:
        keys: set[str] = set()
        for h in c.histories:
            keys |= {k for row in h for k in row}
        per_column.append(keys)
    shared = set.intersection(*per_column) if per_column else set()
    whole = {  # cond/grad_norm_total, not cond/grad_norm/block_0/attn or val/loss@32
        k for k in shared if k.startswith(DIAGNOSTIC_PREFIXES) and k.count("/") == 1
    }
    first = [k for k in PREFERRED_DIAGNOSTICS if k in whole]
    return [*first, *sorted(whole - set(first))][:MAX_DIAGNOSTIC_PANELS]


def draw(columns: list[Column], path: Path) -> Path:
    """Learning curves and shared diagnostics of every run, one colour per column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    keys = [*CURVES, *shared_diagnostics(columns)]
    ncols = 2 if len(keys) <= 4 else 3
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.4 * nrows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes.flat, keys, strict=False):
        lo, hi = math.inf, 0.0
        for i, c in enumerate(columns):
            for j, h in enumerate(c.histories):
                pts = [(r["step"], r[key]) for r in h if key in r and "step" in r]
                pts = [(s, v) for s, v in pts if math.isfinite(v)]
                if not pts:
                    continue
                lo, hi = min(lo, *(v for _, v in pts)), max(hi, *(v for _, v in pts))
                xs, ys = zip(*pts, strict=True)
                ax.plot(
                    xs,
                    ys,
                    color=colours[i % len(colours)],
                    alpha=0.9 if len(c.histories) == 1 else 0.6,
                    lw=1.4,
                    marker="o" if len(pts) < 12 else None,
                    ms=3,
                    label=c.label if j == 0 else None,
                )
        if lo > 0 and hi / lo > 10:  # decades apart: a log axis shows both ends
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=min(len(labels), 3), fontsize=8, frameon=False
    )
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(labels) / 3), 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def table(columns: list[Column]) -> Any:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    t = Table(show_lines=False)
    t.add_column("")
    for c in columns:
        t.add_column(escape(c.label), justify="right", overflow="fold")
    diffs = config_differences(columns)
    t.add_row("[bold]config (differences only)[/bold]", *[""] * len(columns), end_section=True)
    for k, values in diffs.items():
        t.add_row(Text(k), *(Text(v) for v in values))  # values are text, never markup
    if not diffs:
        t.add_row("(identical configs)", *[""] * len(columns))
    t.rows[-1].end_section = True
    t.add_row(
        "[bold]metrics (final; best/ = best validation)[/bold]",
        *[""] * len(columns),
        end_section=True,
    )
    for k, values in metric_rows(columns):
        t.add_row(k, *values)
    t.add_row("runs", *[str(len(c.runs)) for c in columns])
    t.add_row("status", *[Text(c.status()) for c in columns])  # a pruned run stopped early
    return t


def compare(targets: list[str], out: str | Path | None = None) -> int:
    """Print the table, write the figure; returns an exit code."""
    import sys

    from rich.console import Console

    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    columns = load_columns(targets)
    out_dir = (
        Path(out)
        if out is not None
        else Path("reports") / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table(columns))
    figure = draw(columns, out_dir / "compare.png")
    console.print(f"figure: {figure}", markup=False, highlight=False)
    return 0

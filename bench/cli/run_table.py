"""The end-of-run table ``bench train`` prints: status, main metrics, learning verdict, diagnoses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from bench.training.finish import RunResult

# The metrics a reader looks at first, in this order; the rest stay in the files.
MAIN_KEYS = (
    "train/loss",
    "val/loss",
    "best/val/loss",
    "val/acc",
    "val/acc_nontrivial",
    "val/exact_match",
)


def main_metrics(metrics: dict[str, float]) -> list[tuple[str, float]]:
    """The headline metrics, then length-extrapolation and throughput ones, in a fixed order."""
    rows = [(k, metrics[k]) for k in MAIN_KEYS if k in metrics]
    rows += sorted((k, v) for k, v in metrics.items() if k.startswith("val/loss@"))
    rows += sorted((k, v) for k, v in metrics.items() if k.startswith("val/exact_match@"))
    rows += sorted((k, v) for k, v in metrics.items() if k.startswith("throughput/"))
    return rows


def print_run_summary(result: RunResult, console: Console | None = None) -> None:
    """Status, run directory and the main metrics of a finished run."""
    console = console or Console()
    table = Table(title=f"run {result.status}", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in main_metrics(result.metrics):
        table.add_row(key, f"{value:.4g}")
    console.print(table)
    if result.reason:
        console.print(f"reason: {result.reason}")
    if result.learning:
        console.print(f"learning: {result.learning.replace('_', ' ')}: {result.learning_reason}")
    from bench.diagnoses import Diagnosis, split

    diagnoses, watches = split(Diagnosis.from_dict(d) for d in result.diagnoses)
    for label, found in (("diagnoses", diagnoses), ("watches", watches)):
        if found:
            console.print(f"{label} ({len(found)}):")
            for d in found:
                console.print(f"  - {d.line()}", highlight=False, markup=False)
    print(result.run_dir)

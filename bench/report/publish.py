"""The report in W&B: a ``job_type="report"`` run in the sweep directory (offline by
default) holding the figures and tables, and, online with ``--wandb``, a W&B
Report for the sweep's group through ``wandb-workspaces`` when it is installed.

Nothing here may fail the report: W&B problems become one warning line.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Literal, cast

from bench import redact
from bench.report.collect import SweepData
from bench.report.figures import RenderedFigure

MODES = ("offline", "online", "disabled")


class ReportTrackingWarning(UserWarning):
    """W&B could not record the report; the files on disk are complete."""


WandbMode = Literal["online", "offline", "disabled"]


def resolve_mode(data: SweepData, publish: bool, mode: str | None) -> WandbMode:
    """offline unless the sweep disabled tracking; online only when asked and logged in."""
    if mode is not None:
        return cast(WandbMode, mode)  # one of the choices of bench report --wandb-mode
    if os.environ.get("WANDB_MODE") == "disabled":
        return "disabled"
    tracking = data.spec.base.get("tracking") or {}
    if tracking.get("mode") == "disabled" and not publish:
        return "disabled"
    if publish:
        from bench.wandb_settings import has_wandb_login

        if has_wandb_login():
            return "online"
        warnings.warn(
            "--wandb: no W&B login found (wandb login / WANDB_API_KEY); logging offline",
            ReportTrackingWarning,
            stacklevel=2,
        )
    return "offline"


def _cell(v: Any) -> Any:
    """W&B tables take numbers or strings; None/NaN become empty strings."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return v if isinstance(v, int | float | str) else str(v)


def log_report(
    data: SweepData,
    mode: WandbMode,
    figures: list[RenderedFigure],
    tables: dict[str, tuple[list[str], list[list[Any]]]],
    findings: list[str],
    report_dir: Path,
    into_sweep_run: bool = False,
) -> Path | None:
    """Log figures, tables and findings to a W&B run in ``SWEEP_DIR/wandb``.

    ``into_sweep_run`` (``bench report --wandb``): into the sweep-level run that
    ``bench sweep`` wrote the trials table to (same run id, resumed), so the
    sweep's page holds the report's figures; else into a new ``report`` run.
    Returns the run's ``.wandb`` file (offline) / directory, or None when
    disabled or when W&B failed (with a warning).
    """
    if mode == "disabled":
        return None
    try:
        import wandb

        from bench.wandb_file import wait_until_closed
        from bench.wandb_settings import wandb_settings

        tracking = data.spec.base.get("tracking") or {}
        if mode == "offline":
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        with redact.hidden_argv():  # wandb records sys.argv in the run's metadata
            run = wandb.init(
                project=tracking.get("project", "bench"),
                entity=tracking.get("entity"),
                group=data.name,
                **_which_run(data, into_sweep_run),
                dir=str(data.dir),
                mode=mode,
                config={"report_dir": str(report_dir)}
                if into_sweep_run  # the sweep run's config holds the spec already
                else {"sweep": data.name, "report_dir": str(report_dir)},
                settings=wandb_settings(mode),
                tags=["sweep"] if into_sweep_run else ["report"],
            )
        try:
            run.log(_report_row(wandb, figures, tables))
            run.summary["report/findings"] = "\n".join(findings)
            run.summary["report/dir"] = str(report_dir)
            sync_file = getattr(run.settings, "sync_file", None)
        finally:
            run.finish()
        if sync_file and mode == "offline":
            wait_until_closed(sync_file, 30.0)
            return Path(sync_file)
        return data.dir / "wandb"
    except Exception as e:  # the files on disk are the report; W&B is a copy
        warnings.warn(
            f"report not logged to W&B: {type(e).__name__}: {e}",
            ReportTrackingWarning,
            stacklevel=2,
        )
        return None


def _report_row(
    wandb: Any,
    figures: list[RenderedFigure],
    tables: dict[str, tuple[list[str], list[list[Any]]]],
) -> dict[str, Any]:
    """One W&B log row: every drawn figure as an image, every table as a ``wandb.Table``."""
    row: dict[str, Any] = {}
    for f in figures:
        if f.path is not None:
            row[f"report/{f.name}"] = wandb.Image(str(f.path), caption=f.title)
    for name, (cols, rows) in tables.items():
        row[f"report/{name}"] = wandb.Table(
            columns=[*cols],
            data=[[_cell(v) for v in r] for r in rows],
            allow_mixed_types=True,
        )
    return row


def _which_run(data: SweepData, into_sweep_run: bool) -> dict[str, Any]:
    """wandb.init arguments naming the sweep-level run (resumed) or a new report run."""
    if not into_sweep_run:
        return {"job_type": "report", "name": f"{data.name}-report"}
    from bench.sweeps.progress.wandb_run import sweep_run_id

    run_id = sweep_run_id(data.name, data.meta.get("created"))
    return {"job_type": "sweep", "name": f"{data.name}-sweep", "id": run_id, "resume": "allow"}


def publish_wandb_report(data: SweepData, findings: list[str], metric: str) -> str | None:
    """Create a W&B Report for the sweep's group (online, wandb-workspaces installed).

    Returns its URL, or None after one clear line saying why not.
    """
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        warnings.warn(
            "W&B Report not published: wandb-workspaces is not installed "
            "(pip install wandb-workspaces)",
            ReportTrackingWarning,
            stacklevel=2,
        )
        return None
    tracking = data.spec.base.get("tracking") or {}
    project = tracking.get("project", "bench")
    entity = tracking.get("entity")
    try:
        runset = wr.Runset(entity=entity, project=project, name=data.name,
                           filters=f"Metric('Group') == '{data.name}'")  # fmt: skip
        report = wr.Report(
            project=project,
            entity=entity,
            title=f"Sweep report: {data.name}",
            description=data.spec.description,
            blocks=[
                wr.H1(text=f"Sweep {data.name}"),
                wr.MarkdownBlock(text="\n".join(f"- {f}" for f in findings)),
                wr.PanelGrid(
                    runsets=[runset],
                    panels=[
                        wr.LinePlot(x="Step", y=["val/loss"]),
                        wr.LinePlot(x="Step", y=["train/loss"]),
                        wr.BarPlot(metrics=[metric]),
                    ],
                ),
            ],
        )
        report.save()
        return str(report.url)
    except Exception as e:
        warnings.warn(
            f"W&B Report not published: {type(e).__name__}: {e}",
            ReportTrackingWarning,
            stacklevel=2,
        )
        return None

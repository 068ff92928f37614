"""The sweep's table of trials, and the sweep-level W&B run that records it.

Every trial of every study becomes one flat row (study, number, state, cell,
phase, seed, status, reason, values, params, metrics, run_dir): the same table
goes to W&B (``wandb.Table`` named ``trials``) when the sweep finishes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from typing import Any

from bench import redact
from bench.config import build_run_config
from bench.sweeps.layout import Sweep
from bench.sweeps.trials import read_trial

SUMMARY_METRICS = (
    "val/loss",
    "best/val/loss",
    "val/acc",
    "val/exact_match",
    "throughput/tokens_per_sec",
)


def trial_rows(sweep: Sweep) -> list[dict[str, Any]]:
    """One flat dict per trial of the sweep (tuning and seed studies)."""
    metrics_cols = [o.metric for o in sweep.spec.objectives]
    rows = []
    for name, study in sweep.studies().items():
        for t in study.get_trials(deepcopy=False):
            rec = read_trial(name, t)
            row: dict[str, Any] = {
                "study": name,
                "trial": rec.number,
                "state": rec.state,
                "outcome": rec.outcome,
                "cell": rec.cell,
                "phase": rec.phase,
                "seed": rec.seed if rec.seed is not None else -1,
                "reason": rec.reason,
                "run_dir": rec.run_dir,
                "duration_s": rec.duration_s if rec.duration_s is not None else math.nan,
                "params": json.dumps(rec.params, sort_keys=True),
            }
            for i, m in enumerate(metrics_cols):
                row[f"value/{m}"] = rec.values[i] if rec.values else math.nan
            for m in SUMMARY_METRICS:
                row[m] = float(rec.metrics.get(m, math.nan))
            rows.append(row)
    return rows


def sweep_run_id(name: str, created: str | None) -> str:
    """The W&B run id of a sweep's sweep-level run: the same for ``bench sweep`` (which writes
    the trials table) and ``bench report --wandb`` (which adds the report's figures)."""
    digest = hashlib.sha1(f"{name}|{created}".encode()).hexdigest()[:8]
    return f"sweep-{re.sub(r'[^A-Za-z0-9_-]+', '-', name)[:40]}-{digest}"


def log_sweep_to_wandb(sweep: Sweep) -> str | None:
    """Log the trials table to a sweep-level W&B run in the sweep directory.

    Mode follows the spec's ``base.tracking.mode`` (offline by default; nothing when
    disabled). A W&B failure only warns: the study is the system of record.
    Returns the run's directory, or None when nothing was logged.
    """
    cfg = build_run_config(overrides={"tracking.mode": "offline", **_tracking(sweep)})
    if cfg.tracking.mode == "disabled":
        return None
    try:
        import wandb

        from bench.wandb_settings import finish_run, wandb_settings

        rows = trial_rows(sweep)
        columns = list(rows[0]) if rows else ["study", "trial"]
        header: list[str | int] = [*columns]
        with redact.hidden_argv():  # wandb records sys.argv in the run's metadata
            run = wandb.init(
                project=cfg.tracking.project,
                entity=cfg.tracking.entity,
                group=sweep.spec.name,
                job_type="sweep",
                name=f"{sweep.spec.name}-sweep",
                id=sweep_run_id(sweep.spec.name, _created(sweep)),
                resume="allow",  # a grown sweep logs its table again into the same run
                dir=str(sweep.dir),
                mode=cfg.tracking.mode,
                config={
                    "sweep": sweep.spec.model_dump(mode="json"),
                    "storage": redact.url(str(sweep.storage_url)),
                },
                settings=wandb_settings(cfg.tracking.mode),
                tags=["sweep"],
                reinit="create_new",
            )
        table = wandb.Table(columns=header, data=[[r[c] for c in columns] for r in rows])
        run.log({"trials": table})
        best: dict[str, float] = {}
        metric = sweep.spec.objectives[0].metric
        for r in rows:
            if r["state"] == "COMPLETE" and r["phase"] != "seed":
                key, value = f"best/{r['cell']}", r[f"value/{metric}"]
                if key not in best or _better(sweep, value, best[key]):
                    best[key] = value
        run.summary.update(best)
        run.summary["n_trials"] = len(rows)
        finish_run(run, 0)  # waits until the offline .wandb file is complete
        return str(sweep.dir / "wandb")
    except Exception as e:  # tracking never fails the sweep
        warnings.warn(f"sweep-level W&B run not written: {type(e).__name__}: {e}", stacklevel=2)
        return None


def _created(sweep: Sweep) -> str | None:
    created = sweep.record().get("created")
    return str(created) if created is not None else None


def _tracking(sweep: Sweep) -> dict[str, Any]:
    base = sweep.spec.base.get("tracking", {})
    return {f"tracking.{k}": v for k, v in base.items() if k in ("mode", "project", "entity")}


def _better(sweep: Sweep, a: float, b: float) -> bool:
    return a < b if sweep.spec.objectives[0].direction == "minimize" else a > b

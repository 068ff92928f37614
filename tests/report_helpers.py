"""Synthetic sweeps for the report tests: a real Optuna journal storage holding
trials with the user attributes the sweep workers set, and run directories
written in the formats ``train_run`` and the diagnostics callbacks write
(summary.json, metrics.csv, status.json, manifest.json, diagnostics/*.npz).

The numbers are chosen, so the statistics have known answers. These sweeps are
constructed, not trained: ``chance`` and ``learning`` write the ``baseline`` and
``learning`` keys of summary.json that runs record against their task.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

TRAIN_LEN = 16
LR_DIST = FloatDistribution(1e-4, 1e-1, log=True)
GRID = tuple(float(x) for x in np.geomspace(1e-4, 1e-1, 5))  # the 5-point log grid of LR_DIST


@dataclass
class Cell:
    """One cell: axis values, seed results, tuning results; ``None`` values are diverged."""

    axes: dict[str, str]
    seeds: list[float] = field(default_factory=list)
    tune: list[tuple[float, float | None]] = field(default_factory=list)  # (lr, loss or None)
    failed: list[str] = field(default_factory=list)  # reasons of failed tuning trials
    running_seeds: int = 0  # seed trials still running (no summary.json)
    tokens_per_sec: float | None = 1000.0
    diagnostics: bool = True
    chance: float | None = None  # summary.json baseline val/loss (None: an older sweep)
    learning: str | None = None  # summary.json learning.status of every run (None: not recorded)
    pruned: list[float] = field(default_factory=list)  # lrs of tuning trials pruned at step 20
    model: dict[str, Any] = field(default_factory=dict)  # config.yaml's model section
    tps_noise: float = 0.0  # relative spread of throughput across runs
    params: int = 1234  # summary.json params (a size ladder's rungs differ)

    @property
    def key(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.axes.items())


def _write_run(
    run_dir: Path, loss: float | None, seed: int, cell: Cell, finished: bool, lr: float = 3e-3
) -> None:
    run_dir.mkdir(parents=True)
    config = {"model": cell.model, "train": {"seed": seed, "lr": lr}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "manifest.json").write_text(json.dumps({
        "git_sha": "abc123", "packages": {"torch": "2.13.0", "optuna": "5.0.0"},
        "python": "3.11.7", "device": "cpu", "processor": "x86_64", "cpu_count": 2,
        "platform": "Linux", "seed": seed, "command": "bench sweep synth",
    }))  # fmt: skip
    steps = [0, 10, 20, 30, 40]
    final = loss if loss is not None else math.nan
    rows = []
    for i, s in enumerate(steps):
        frac = i / (len(steps) - 1)
        val = final + 0.5 * (1 - frac) if loss is not None else (math.nan if i > 2 else 3.0)
        row: dict[str, Any] = {"step": s, "train/loss": val + 0.01, "val/loss": val}
        if cell.diagnostics:
            row.update({
                "hessian/lambda_max": 5.0 + 10 * frac, "hessian/trace": 50.0 + 20 * frac,
                "cond/noise_scale": 8.0 + 30 * frac, "cond/attn_entropy/layer_0": 2.0 - frac,
                "cond/attn_entropy/layer_1": 1.8 - frac,
            })  # fmt: skip
        rows.append(row)
    keys = sorted({k for r in rows for k in r})
    with open(run_dir / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    if not finished:
        (run_dir / "status.json").write_text(json.dumps({"status": "running", "reason": ""}))
        return
    if loss is None:
        (run_dir / "status.json").write_text(
            json.dumps({"status": "diverged", "reason": "non-finite train/loss at step 30"})
        )
        return
    metrics = {"val/loss": loss, "best/val/loss": loss, "val/acc": 1 / (1 + loss),
               "val/exact_match": 0.1, "train/loss": loss + 0.01}  # fmt: skip
    for scale in (1, 2, 4):
        metrics[f"val/loss@{TRAIN_LEN * scale}"] = loss + 0.1 * (scale - 1)
    if cell.tokens_per_sec is not None:
        wobble = 1 + cell.tps_noise * ((seed * 7919) % 11 - 5) / 5
        metrics["throughput/tokens_per_sec"] = cell.tokens_per_sec * wobble
        metrics["throughput/mfu"] = 0.01
    if cell.diagnostics:
        metrics["hessian/lambda_max"] = 15.0
        d = run_dir / "diagnostics"
        d.mkdir()
        blocks = np.array(["block_0", "block_1", "block_2"])
        np.savez(d / "gradients.npz", steps=np.array([0, 25]), blocks=blocks,
                 grad_norm_blocks=np.array([[1.0, 0.5, 0.2], [0.3, 0.3, 0.25]]),
                 keys=np.array(["cond/grad_norm_total"]), values=np.array([[1.0], [0.4]]))  # fmt: skip
        xs = np.linspace(-1, 1, 7)
        gx, gy = np.meshgrid(xs, xs)
        np.savez(d / "landscape_random.npz", xs=xs, ys=xs, losses=loss + gx**2 + 2 * gy**2)
    (run_dir / "status.json").write_text(json.dumps({"status": "completed", "reason": ""}))
    summary: dict[str, Any] = {"status": "completed", "reason": "", "steps": 40,
                               "wall_time": 1.0, "params": cell.params, "metrics": metrics}  # fmt: skip
    if cell.chance is not None:
        summary["baseline"] = {"val/loss": cell.chance, "val/acc": 0.1, "val/exact_match": None,
                               **{f"val/loss@{TRAIN_LEN * k}": cell.chance for k in (1, 2, 4)}}  # fmt: skip
    if cell.learning is not None:
        summary["learning"] = {"status": cell.learning,
                               "reason": f"constructed: {cell.learning} (val/loss {loss:.3g})"}  # fmt: skip
    (run_dir / "summary.json").write_text(json.dumps(summary))


def make_sweep(
    root: Path, cells: list[Cell], name: str = "synth", description: str = "",
    extra_spec: dict[str, Any] | None = None,
) -> Path:  # fmt: skip
    """A sweep directory with ``cells``; returns its path."""
    d = root / name
    (d / "runs").mkdir(parents=True)
    axes = list(cells[0].axes)
    compare = {f"model.{a}" if a != "variant" else a: list(dict.fromkeys(c.axes[a] for c in cells))
               for a in axes}  # fmt: skip
    for key in ((extra_spec or {}).get("scale") or {}).get("ladder", {}):  # rungs, not cells
        compare.pop(key, None)
    n_seeds = max(len(c.seeds) + c.running_seeds for c in cells)
    spec = {
        "name": name, "description": description,
        "base": {"task": {"name": "copy", "seq_len": TRAIN_LEN}, "tracking": {"mode": "disabled"}},
        "compare": compare,
        "tune": {"params": {"train.lr": {"low": 1e-4, "high": 0.1, "log": True}},
                 "trials": max(1, *(len(c.tune) + len(c.failed) + len(c.pruned) for c in cells))},
        "seeds": n_seeds, "pruner": "none", **(extra_spec or {}),
    }  # fmt: skip
    (d / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    journal = d / "journal.log"
    (d / "sweep.json").write_text(json.dumps({
        "name": name, "mode": "compare", "storage": str(journal), "created": "2026-01-01T00:00:00",
        "command": f"bench sweep sweeps/{name}.yaml", "spec": "spec.yaml", "runs": "runs"}))  # fmt: skip
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))
    )
    seeds_study = optuna.create_study(study_name=f"{name}/seeds", storage=storage)
    for c in cells:
        study = optuna.create_study(study_name=f"{name}/tune/{c.key}", storage=storage)
        number = 0
        for lr, loss in c.tune:
            run_dir = d / "runs" / f"tune-{c.key}-t{number:04d}"
            _write_run(run_dir, loss, 0, c, finished=True, lr=lr)
            attrs = {"cell": c.key, "phase": "tune", "seed": 0, "run_dir": str(run_dir),
                     "status": "completed" if loss is not None else "diverged",
                     "reason": "" if loss is not None else "non-finite train/loss at step 30"}  # fmt: skip
            state = TrialState.COMPLETE if loss is not None else TrialState.PRUNED
            study.add_trial(create_trial(state=state, value=loss, params={"train.lr": lr},
                                         distributions={"train.lr": LR_DIST}, user_attrs=attrs))  # fmt: skip
            number += 1
        for lr in c.pruned:
            reason = "pruned at step 20: val/loss 2.6 above chance after warm-up"
            attrs = {"cell": c.key, "phase": "tune", "seed": 0, "status": "pruned",
                     "reason": reason}  # fmt: skip
            study.add_trial(create_trial(state=TrialState.PRUNED, params={"train.lr": lr},
                                         distributions={"train.lr": LR_DIST}, user_attrs=attrs,
                                         intermediate_values={10: 2.7, 20: 2.6}))  # fmt: skip
            number += 1
        for reason in c.failed:
            attrs = {"cell": c.key, "phase": "tune", "seed": 0, "status": "failed", "reason": reason,
                     "run_dir": str(d / "runs" / f"tune-{c.key}-t{number:04d}")}  # fmt: skip
            study.add_trial(create_trial(state=TrialState.FAIL, params={"train.lr": 0.05},
                                         distributions={"train.lr": LR_DIST}, user_attrs=attrs))  # fmt: skip
            number += 1
        best_lr = min((t for t in c.tune if t[1] is not None), key=lambda t: t[1], default=(3e-3,))[
            0
        ]
        overrides = json.dumps(
            {**{f"model.{k}": v for k, v in c.axes.items()}, "train.lr": best_lr}
        )
        for i, loss in enumerate([*c.seeds, *([None] * c.running_seeds)]):
            running = i >= len(c.seeds)
            n = len(seeds_study.trials)
            run_dir = d / "runs" / f"seed-{c.key}-t{n:04d}"
            _write_run(run_dir, loss, i + 1, c, finished=not running, lr=best_lr)
            attrs = {"cell": c.key, "phase": "seed", "seed": i + 1, "run_dir": str(run_dir),
                     "status": "running" if running else "completed", "reason": "",
                     "overrides": overrides, "job": f"{c.key}|seed={i + 1}"}  # fmt: skip
            if running:
                trial = seeds_study.ask()
                for k, v in attrs.items():
                    trial.set_user_attr(k, v)
            else:
                seeds_study.add_trial(create_trial(state=TrialState.COMPLETE, value=loss,
                                                   user_attrs=attrs))  # fmt: skip
    return d


def standard_cells(seed: int = 0, n_seeds: int = 3) -> list[Cell]:
    """pre beats post by 0.3 (noise sd 0.02); rope and alibi are the same distribution.

    post/alibi has a diverged tuning trial, a failed one and a seed run still going.
    """
    rng = np.random.default_rng(seed)
    out = []
    for norm, base in (("pre", 2.0), ("post", 2.3)):
        for pos in ("rope", "alibi"):
            c = Cell({"norm_placement": norm, "pos_encoding": pos},
                     seeds=[float(base + rng.normal(0, 0.02)) for _ in range(n_seeds)],
                     tune=[(lr, base + 0.1 * (math.log10(lr) + 2.5) ** 2 + 0.05)
                           for lr in GRID],
                     tokens_per_sec=1000.0 if norm == "pre" else 1400.0)  # fmt: skip
            if norm == "post" and pos == "alibi":
                c.tune.append((0.08, None))
                c.failed.append("RuntimeError: CUDA out of memory <img src=x onerror=alert(1)>")
                c.seeds = c.seeds[:-1]
                c.running_seeds = 1
            out.append(c)
    return out

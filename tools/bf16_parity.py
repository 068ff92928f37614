"""Do bf16-autocast runs reach the same validation loss as fp32 runs, within the seed noise?

Issue 15, item 1: before bf16 may be picked by ``train.precision: auto``, the
quickstart's config and two other tasks are trained at ``32-true`` and at
``bf16-mixed`` with the same seeds (same data, same init, same batches), and
the final ``val/loss`` compared. Prints one row per task: the mean and standard
deviation over seeds of each precision, the difference of the means and its
noise (two standard errors of the difference, sqrt(sd_32²/n + sd_bf16²/n)), and
whether the difference is within it. Runs in-process, one after another, with
the diagnostics off; run directories go under ``--out``.

    python tools/bf16_parity.py [--seeds 3] [--tasks quickstart text sort text-wide] [--steps N]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import yaml

from bench.config import build_run_config

QUICKSTART = Path(__file__).resolve().parent.parent / "sweeps" / "quickstart.yaml"
PRECISIONS = ("32-true", "bf16-mixed")
OFF = {
    f"diagnostics.{k}": False
    for k in ("gradients", "noise_scale", "attention_entropy", "throughput", "attention_maps")
}


def _flat(section: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{section}.{k}": v for k, v in values.items()}


def quickstart() -> dict[str, Any]:
    """The quickstart's base config (its pre-LN, learned-positions cell) at its step budget."""
    spec = yaml.safe_load(QUICKSTART.read_text())
    base = spec["base"]
    out: dict[str, Any] = {}
    for section in ("task", "model", "train"):
        out |= _flat(section, base.get(section, {}))
    return out | {"train.max_steps": spec["budget"]["max_steps"]}


TASKS: dict[str, dict[str, Any]] = {
    "quickstart": quickstart(),
    # byte-level LM on the standard library's source (bench.tasks.text): the realistic one
    "text": {
        "task.name": "text",
        "task.seq_len": 64,
        "task.n_train": 4096,
        "task.n_val": 128,
        "task.eval_scales": [1],
        "task.batch_size": 32,
        "model.d_model": 64,
        "model.n_layers": 2,
        "model.n_heads": 4,
        "model.max_len": 64,
        "train.lr": 3e-3,
        "train.max_steps": 300,
        "train.val_every": 100,
    },
    # a size at which auto picks bf16 on a CPU with native bf16 (not in the default list: minutes)
    "text-wide": {
        "task.name": "text",
        "task.seq_len": 128,
        "task.n_train": 4096,
        "task.n_val": 64,
        "task.eval_scales": [1],
        "task.batch_size": 16,
        "model.d_model": 256,
        "model.n_layers": 4,
        "model.n_heads": 4,
        "model.max_len": 128,
        "train.lr": 1e-3,
        "train.max_steps": 150,
        "train.val_every": 75,
    },
    "sort": {
        "task.name": "sort",
        "task.seq_len": 8,
        "task.n_symbols": 12,
        "task.n_train": 2048,
        "task.n_val": 128,
        "task.eval_scales": [1, 2],
        "task.batch_size": 32,
        "model.d_model": 32,
        "model.n_layers": 2,
        "model.n_heads": 4,
        "model.max_len": 48,
        "train.lr": 1e-2,
        "train.max_steps": 300,
        "train.val_every": 100,
    },
}


def final_val_loss(task: str, precision: str, seed: int, out: Path, steps: int | None) -> float:
    """One run's last validation loss."""
    from bench.training.run import train_run

    overrides = {
        **TASKS[task],
        **OFF,
        "train.precision": precision,
        "train.seed": seed,
        "train.threads": 1,
        "train.progress_bar": False,
        "tracking.mode": "disabled",
        "tracking.run_dir": str(out / f"{task}-{precision}-s{seed}"),
    }
    if steps is not None:
        overrides["train.max_steps"] = steps
    result = train_run(build_run_config(overrides=overrides))
    if result.status != "completed":
        return math.nan
    return float(result.metrics.get("val/loss", math.nan))


def row(task: str, losses: dict[str, list[float]]) -> str:
    n = len(losses["32-true"])
    m32, mbf = (statistics.fmean(losses[p]) for p in PRECISIONS)
    s32, sbf = (statistics.stdev(losses[p]) if n > 1 else math.nan for p in PRECISIONS)
    noise = 2 * math.sqrt(s32**2 / n + sbf**2 / n)
    verdict = "yes" if abs(mbf - m32) <= noise else "NO"
    return (
        f"| {task} | {n} | {m32:.4g} ± {s32:.2g} | {mbf:.4g} ± {sbf:.2g} | "
        f"{mbf - m32:+.2g} | {noise:.2g} | {verdict} |"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--tasks", nargs="+", default=["quickstart", "text", "sort"], choices=list(TASKS)
    )
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, help="override every task's train.max_steps")
    p.add_argument("--out", type=Path, help="run directories (default: a temporary one)")
    args = p.parse_args()
    import lightning  # noqa: F401  (it sets its loggers' levels when imported: set ours after)

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)  # one line a task, not 20 a run
    warnings.filterwarnings("ignore", module="lightning")
    if args.seeds < 1:
        print(f"--seeds={args.seeds}: allowed: an integer >= 1", file=sys.stderr)
        return 2
    out = args.out or Path(tempfile.mkdtemp(prefix="bf16-parity-"))
    started = time.perf_counter()
    lines = [
        "| task | seeds | val/loss fp32 (mean ± sd) | val/loss bf16 (mean ± sd) | bf16 - fp32 "
        "| noise (2 SE) | within noise |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in args.tasks:
        losses = {
            prec: [final_val_loss(task, prec, s, out, args.steps) for s in range(args.seeds)]
            for prec in PRECISIONS
        }
        per_seed = "  ".join(
            f"{prec} {[float(f'{v:.4g}') for v in vals]}" for prec, vals in losses.items()
        )
        print(f"{task}: {per_seed}", flush=True)
        lines.append(row(task, losses))
    print("\n".join(lines))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{time.perf_counter() - started:.0f} s; load average {load}; runs in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

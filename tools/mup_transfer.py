"""Does the best learning rate move with width? µP against the standard parameterization.

Tensor Programs V (Yang et al. 2022, arXiv 2203.03466) claims that under µP the optimal
hyperparameters are stable across width; with Adam in the standard parameterization the
best learning rate falls as the model widens. This trains the byte-level ``text`` task at
each width (4 layers, heads fixed at 4, ``train.mup_base_width`` the smallest width) on a
learning-rate grid of factor 2, ``--seeds`` seeds each, a fixed step budget, under both
parameterizations, through bench's own ``train_run`` (tracking disabled, diagnostics off),
and prints, per parameterization and width, the mean final ``val/loss`` at each LR, the
best LR (argmin of the mean) and its shift in grid steps from the smallest width::

    flock /tmp/bench-measure.lock nice -n 5 python tools/mup_transfer.py --out /tmp/mup-transfer

The defaults (``--widths 32 64 128``, LRs 2^-12..2^-2, 2 seeds, 150 steps) are the
measurement docs/mup.md records, with its wall time. Each finished run is appended to
``OUT/runs.jsonl``; a rerun with the same ``--out`` skips it. A diverged run counts as the
worst loss of its width.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

from bench.config import RunConfig, build_run_config

DIAGNOSTICS_OFF = {
    f"diagnostics.{k}": False
    for k in ("gradients", "noise_scale", "attention_entropy", "throughput", "attention_maps")
} | {"diagnostics.hessian.enabled": False, "diagnostics.landscape.enabled": False}


def run_config(
    parameterization: str, width: int, lr: float, seed: int, args: argparse.Namespace, out: Path
) -> RunConfig:
    return build_run_config(
        overrides={
            "model.d_model": width,
            "model.n_layers": args.layers,
            "model.n_heads": 4,
            "train.parameterization": parameterization,
            "train.mup_base_width": args.widths[0],
            "train.lr": lr,
            "train.max_steps": args.steps,
            "train.warmup_steps": args.steps // 10,
            "train.val_every": args.steps,
            "train.log_every": args.steps,
            "train.seed": seed,
            "train.precision": "32-true",
            "train.threads": args.threads,
            "train.progress_bar": False,
            "task.name": "text",
            "task.seq_len": args.seq_len,
            "task.batch_size": args.batch_size,
            "task.eval_scales": [1],
            "task.n_val": args.n_val,
            "task.max_bytes": args.max_bytes,
            "task.seed": seed,
            "tracking.mode": "disabled",
            "tracking.out_dir": str(out),
            **DIAGNOSTICS_OFF,
        }
    )


def final_loss(cfg: RunConfig) -> float:
    from bench.training.run import train_run

    result = train_run(cfg)
    loss = result.metrics.get("val/loss")
    return float(loss) if loss is not None and math.isfinite(loss) else math.nan


def table(losses: dict[str, dict[int, dict[float, list[float]]]], lrs: list[float]) -> str:
    """Mean final val/loss per LR, the argmin and its shift from the smallest width."""
    lines = []
    for parameterization, by_width in losses.items():
        lines.append(f"\n{parameterization}: mean final val/loss (nats/byte) per log2 LR")
        lines.append(
            "width  " + " ".join(f"{round(math.log2(lr)):>6}" for lr in lrs) + "   best  shift"
        )
        first = None
        for width, by_lr in by_width.items():
            worst = max((x for xs in by_lr.values() for x in xs if math.isfinite(x)), default=9.9)
            means = [
                statistics.mean(worst if math.isnan(x) else x for x in by_lr[lr]) for lr in lrs
            ]
            best = min(range(len(lrs)), key=lambda i: means[i])
            first = best if first is None else first
            cells = " ".join(f"{m:6.3f}" for m in means)
            lines.append(
                f"{width:>5}  {cells}  2^{round(math.log2(lrs[best])):<4} {best - first:+d}"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--log2-lrs", type=int, nargs="+", default=list(range(-12, -1)))
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-val", type=int, default=64)
    ap.add_argument("--max-bytes", type=int, default=400_000)
    # one thread: on a shared 2-core machine two threads each made a width-128 run 20x slower
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parameterizations", nargs="+", default=["standard", "mup"])
    ap.add_argument("--out", type=Path, default=None, help="run directories and results.json")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="mup-transfer-"))
    out.mkdir(parents=True, exist_ok=True)
    lrs = [2.0**k for k in args.log2_lrs]
    losses: dict[str, dict[int, dict[float, list[float]]]] = {}
    done = out / "runs.jsonl"  # one line a finished run: a rerun with the same --out resumes
    previous = {}
    if done.exists():
        for line in done.read_text().splitlines():
            r = json.loads(line)
            previous[(r["parameterization"], r["width"], r["log2_lr"], r["seed"])] = r["loss"]
    start = time.time()
    for parameterization in args.parameterizations:
        for width in args.widths:
            for lr in lrs:
                for seed in range(args.seeds):
                    key = (parameterization, width, round(math.log2(lr)), seed)
                    t0 = time.time()
                    if key in previous:
                        loss = previous[key]
                    else:
                        cfg = run_config(parameterization, width, lr, seed, args, out / "runs")
                        loss = final_loss(cfg)
                        with done.open("a") as f:
                            names = ("parameterization", "width", "log2_lr", "seed")
                            f.write(
                                json.dumps({**dict(zip(names, key, strict=True)), "loss": loss})
                                + "\n"
                            )
                    losses.setdefault(parameterization, {}).setdefault(width, {}).setdefault(
                        lr, []
                    ).append(loss)
                    print(
                        f"{parameterization:>8} d={width:<4} lr=2^{round(math.log2(lr)):<4} "
                        f"seed {seed}: val/loss {loss:.4f} ({time.time() - t0:.1f} s)",
                        flush=True,
                    )
    wall = time.time() - start
    (out / "results.json").write_text(
        json.dumps(
            {
                "args": {k: v for k, v in vars(args).items() if k != "out"},
                "wall_seconds": wall,
                "losses": {
                    p: {str(w): {str(lr): v for lr, v in d.items()} for w, d in by.items()}
                    for p, by in losses.items()
                },
            },
            indent=1,
        )
    )
    print(table(losses, lrs))
    print(f"\nwall time {wall / 60:.1f} min; results in {out / 'results.json'}")


if __name__ == "__main__":
    main()

"""Does ``bench throughput`` agree with the run-time throughput callback on one config?

Issue 15, item 2: for the same config, the tokens/s and MFU that ``bench
throughput`` reports (plain PyTorch loop, median of interleaved rounds) and
those a real run logs (:class:`bench.diagnostics.throughput.callback.ThroughputDiagnostics`
inside a Lightning Trainer, whole-run average after warm-up) should agree
within 10%. In one process, on one config (default: a d_model=128, 2-layer
decoder on copy at seq 64, batch 32, one thread; ``--set key=value`` to
change), this script

1. runs ``bench throughput``'s measurement (:func:`run_throughput`) on the config;
2. trains it for ``--steps`` steps with :func:`bench.training.run.train_run`
   (real Trainer, default diagnostics, W&B off) and reads the callback's summary;
3. alternates 1. and 2. ``--repeats`` times and ends with 1. (a shared machine's
   load drifts within minutes; alternating spreads the drift over both), and
   prints callback / command for tokens/s and MFU (median over the repeats of
   each), and whether the peaks and FLOPs per token are the same numbers.

    python tools/throughput_agreement.py [--repeats 3] [--steps 60] [--set model.d_model=64]

Run it under ``flock /tmp/bench-measure.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

TARGET = 0.10


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3, help="real runs, alternated with commands")
    p.add_argument("--steps", type=int, default=60, help="training steps of the real run")
    p.add_argument("--rounds", type=int, default=9, help="rounds of each command measurement")
    p.add_argument("--round-steps", type=int, default=3, help="steps per round")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)

    import torch

    from bench.cli.throughput import run_throughput
    from bench.config import build_run_config, parse_value
    from bench.training.run import train_run

    overrides = {
        "model.d_model": 128,
        "model.n_layers": 2,
        "model.n_heads": 4,
        "task.name": "copy",
        "task.seq_len": 64,
        "task.eval_scales": [1],
        "task.n_train": 4096,
        "task.n_val": 64,
        "task.batch_size": 32,
        "train.max_steps": args.steps,
        "train.val_every": args.steps,
        "train.threads": 1,
        "train.progress_bar": False,
        "tracking.mode": "disabled",
    }
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = parse_value(value)
    work = Path(tempfile.mkdtemp(prefix="bench-tput-agreement-"))
    overrides["tracking.out_dir"] = str(work)
    cfg = build_run_config(overrides=overrides)

    def command() -> dict:
        (row,) = run_throughput([("cfg", cfg)], steps=args.round_steps, rounds=args.rounds)
        return row

    commands, runs = [command()], []
    for i in range(args.repeats):
        overrides["tracking.out_dir"] = str(work / str(i))
        result = train_run(build_run_config(overrides=overrides))
        if result.status != "completed":
            print(f"the run did not complete: {result.status} {result.reason}", file=sys.stderr)
            return 1
        runs.append(result.metrics)
        commands.append(command())
    cmd_tps = statistics.median(r["tokens_per_sec"] for r in commands)
    cmd_mfu = statistics.median(r["frac_peak"] for r in commands)
    cb_tps = statistics.median(m["throughput/tokens_per_sec"] for m in runs)
    cb_mfu = statistics.median(m["throughput/mfu"] for m in runs)
    m, first = runs[0], commands[0]
    cb_fpt = m["throughput/flops_per_sec"] / m["throughput/tokens_per_sec"]
    tps_ratio, mfu_ratio = cb_tps / cmd_tps, cb_mfu / cmd_mfu

    load = os.getloadavg()
    print(
        f"config: d_model={cfg.model.d_model} n_layers={cfg.model.n_layers} "
        f"seq={cfg.task.seq_len} batch={cfg.task.batch_size} threads={torch.get_num_threads()}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    for i, row in enumerate(commands):
        print(
            f"command {i + 1}: {row['tokens_per_sec']:,.0f} tok/s "
            f"[{row['tokens_per_sec_low']:,.0f}, {row['tokens_per_sec_high']:,.0f}] "
            f"({100 * row['interval_coverage']:.0f}%), MFU {100 * row['frac_peak']:.2f}%"
        )
        if i < len(runs):
            tps, mfu = runs[i]["throughput/tokens_per_sec"], runs[i]["throughput/mfu"]
            print(f"run {i + 1} ({args.steps} steps): {tps:,.0f} tok/s, MFU {100 * mfu:.2f}%")
    print(
        f"peak: callback {m['throughput/peak_flops'] / 1e9:.2f} GFLOP/s, "
        f"command {first['peak_flops'] / 1e9:.2f} GFLOP/s ({first['peak_dtype']}, "
        f"{first['peak_source']}); same: {m['throughput/peak_flops'] == first['peak_flops']}"
    )
    print(
        f"FLOPs/token: callback {cb_fpt:,.0f}, command {first['flops_per_token']:,.0f}; "
        f"ratio {cb_fpt / first['flops_per_token']:.4f}"
    )
    ok = abs(tps_ratio - 1) <= TARGET and abs(mfu_ratio - 1) <= TARGET
    print(
        f"callback / command (medians of {len(runs)} runs and {len(commands)} commands): "
        f"tokens/s {tps_ratio:.3f}, MFU {mfu_ratio:.3f} "
        f"(target within {TARGET:.0%}: {'met' if ok else 'NOT met'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

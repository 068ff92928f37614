"""Where does bench's fp32 training step spend its time, op by op, against the nanoGPT-style peer?

Issue 15, item 1 (bench at fp32 >= 1.0x the fastest peer): the two models of
``tools/peer_throughput.py`` train in its loop (forward, fp32 cross-entropy,
backward, AdamW) at its shape; each takes ``--rounds`` profiled steps
(``torch.profiler``, CPU), alternating, and every op keeps its smallest self CPU
time over the rounds (less noise from other processes on a shared machine).
Prints the ``--top`` ops by that time for both models side by side with their
call counts per step, then every op whose call count differs (the work one model
does and the other does not), then the paired step times: ``--pairs`` unprofiled
steps of each model, alternating, and the median of bench / peer.

    python tools/peer_profile.py [--threads 1] [--rounds 3] [--pairs 10] [--top 25]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from peer_throughput import Entry, NanoGPT, add_shape_args, bench_config

from bench.model import build_model

OpTimes = dict[str, tuple[int, float]]  # op -> (calls per step, smallest self CPU ms)


def profiled_step(e: Entry, ids: torch.Tensor, labels: torch.Tensor) -> OpTimes:
    """Every op of one training step: its call count and self CPU time (ms)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        e.steps(ids, labels, 1)
    return {k.key: (k.count, k.self_cpu_time_total / 1e3) for k in prof.key_averages()}


def fastest(rounds: list[OpTimes]) -> OpTimes:
    """Per op: the call count of the last round and the smallest time of any round."""
    out: OpTimes = {}
    for r in rounds:
        for op, (n, ms) in r.items():
            out[op] = (n, min(ms, out[op][1]) if op in out else ms)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(p)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3, help="profiled steps per model")
    p.add_argument("--pairs", type=int, default=10, help="unprofiled steps per model")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=gen)
    ids, labels = data[:, :-1], data[:, 1:]
    torch.manual_seed(0)
    nano = NanoGPT(args.vocab, args.seq, args.d_model, args.layers, args.heads)
    bench = build_model(bench_config(args).model)
    models = [Entry("nanogpt", nano, nano, None), Entry("bench", bench, bench, None)]
    for e in models:
        e.steps(ids, labels, 2)  # warm-up: kernels, allocator, AdamW state

    rounds: dict[str, list[OpTimes]] = {e.name: [] for e in models}
    for _ in range(args.rounds):
        for e in models:
            rounds[e.name].append(profiled_step(e, ids, labels))
    peer, ours = fastest(rounds["nanogpt"]), fastest(rounds["bench"])
    ops = sorted(
        set(peer) | set(ours),
        key=lambda op: -max(peer.get(op, (0, 0.0))[1], ours.get(op, (0, 0.0))[1]),
    )
    print(f"self CPU ms per step, smallest of {args.rounds} rounds; {args.threads} threads")
    print(f"{'op':<58} {'calls':>11} {'nanogpt ms':>11} {'bench ms':>9}")
    for op in ops[: args.top]:
        (n_p, t_p), (n_b, t_b) = peer.get(op, (0, 0.0)), ours.get(op, (0, 0.0))
        print(f"{op[:58]:<58} {n_p:>5}/{n_b:<5} {t_p:>11.1f} {t_b:>9.1f}")
    total_p, total_b = sum(t for _, t in peer.values()), sum(t for _, t in ours.values())
    print(f"{'sum of the per-op minima':<58} {'':>11} {total_p:>11.1f} {total_b:>9.1f}")
    print("ops whose call count differs (nanogpt/bench), with bench's time:")
    for op in ops:
        (n_p, _), (n_b, t_b) = peer.get(op, (0, 0.0)), ours.get(op, (0, 0.0))
        if n_p != n_b:
            print(f"  {op[:56]:<56} {n_p:>5}/{n_b:<5} {t_b:>9.2f}")

    step_s: dict[str, list[float]] = {e.name: [] for e in models}
    for _ in range(args.pairs):
        for e in models:
            step_s[e.name].append(e.steps(ids, labels, 1))
    ratios = [p / b for p, b in zip(step_s["nanogpt"], step_s["bench"], strict=True)]
    print(
        f"paired steps: nanogpt median {1e3 * statistics.median(step_s['nanogpt']):.0f} ms, "
        f"bench median {1e3 * statistics.median(step_s['bench']):.0f} ms; bench speed / nanogpt "
        f"speed per pair: median {statistics.median(ratios):.2f}x, "
        f"range {min(ratios):.2f}-{max(ratios):.2f}x over {args.pairs} pairs"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-step cost of the logging issue 16 added, with diagnostics at their defaults.

What is new: on every measured step (``diagnostics.gradients_every``, default 25) the
entropy forward also takes the largest attention logit per layer, the minimum
per-head entropy, the uniform-attention entropy and the output-logit statistics;
once at init and once at the end, the attention maps are recorded. The diagnosis
rules run once, after training, on the files.

In one process, on one model (default: a d_model=128, 2-layer decoder on copy at
seq 64, batch 32; ``--set key=value`` to change), this script

1. trains ``--steps`` steps with a real Lightning Trainer and the default
   diagnostics (gradient norms, noise scale, entropy, throughput, attention maps),
   timing every step; the fastest is the step time compared against (on a busy
   machine the same statistic as the fastest of the repeated forwards in 2.);
2. times, alternating ``--repeats`` times on the same fixed batch, the measured
   step's entropy forward as it is now (:func:`attention_stats`) and as it was before
   (the same forward and softmax without the new statistics), keeping the fastest of
   each, and the recording of one set of attention maps;
3. prints the new cost per training step, ``(new - old) / every + 2 x maps / steps``,
   as a fraction of the fastest step (target: below 3%).

    python tools/diagnostics_overhead.py [--steps 100] [--repeats 30] [--set model.d_model=64]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.03


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)

    import lightning as L
    import torch

    from bench.config import build_run_config, parse_value
    from bench.diagnostics.attention import recorder as attention_recorder
    from bench.diagnostics.attention.stats import (
        attention_entropy,
        attention_stats,
        record_maps,
        recording_attention,
    )
    from bench.diagnostics.gradients.callback import default_query_masks
    from bench.training.run import train_run

    overrides = {
        "model.d_model": 128,
        "model.n_layers": 2,
        "model.n_heads": 4,
        "task.name": "copy",
        "task.seq_len": 64,
        "task.eval_scales": [1],
        "task.n_train": 2048,
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
    work = Path(tempfile.mkdtemp(prefix="bench-diag-overhead-"))
    overrides["tracking.out_dir"] = str(work)
    cfg = build_run_config(overrides=overrides)
    d = cfg.diagnostics

    # 1. the step time with default diagnostics, from a real run
    class StepTimer(L.Callback):
        """Each training step's wall time (batch start to batch end)."""

        def __init__(self) -> None:
            self.start, self.times = 0.0, list[float]()

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self.start)

    timer = StepTimer()
    torch.set_num_threads(1)
    result = train_run(cfg, callbacks=[timer])
    # The fastest step: on a shared machine the same statistic as the fastest of the
    # repeated forwards below (a median would count other processes' load in the step).
    step_time = min(timer.times)
    median_step = sorted(timer.times)[len(timer.times) // 2]

    # 2. the measured step's forward, new against old, on the run's own model and a batch
    from bench.tasks import build_datamodule
    from bench.training.module import BenchModule

    module = BenchModule(cfg)
    dm = build_datamodule(cfg.task, cfg.model.arch)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    fixed = {k: v[:8] for k, v in batch.items()}  # GradientDiagnostics' entropy_examples
    masks = default_query_masks(module, fixed)
    new_record = attention_recorder.attention_record

    def old_record(q, k, mask, is_causal):  # the code before issue 16: probabilities only
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores + mask.float()
        elif is_causal:
            t, s = scores.shape[-2:]
            future = torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        none = scores.new_empty(0)
        return attention_recorder.AttentionRecord(scores.softmax(dim=-1), none, none)

    @torch.no_grad()
    def old() -> None:
        # the recorder looks the function up at each forward: swap it for the old one
        setattr(attention_recorder, "attention_record", old_record)  # noqa: B010
        try:
            with recording_attention(module.model) as recorder:
                module(fixed)
                for rec in recorder.records.values():
                    attention_entropy(rec.probs, (masks or {}).get("decoder")).cpu()
        finally:
            setattr(attention_recorder, "attention_record", new_record)  # noqa: B010

    def new() -> None:
        attention_stats(module.model, lambda: module(fixed), masks)

    def maps() -> None:
        record_maps(module.model, fixed, d.attention_maps_max_len)

    best = {"old": math.inf, "new": math.inf, "maps": math.inf}
    for _ in range(args.repeats):
        for name, fn in (("old", old), ("new", new), ("maps", maps)):
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)

    extra = max(best["new"] - best["old"], 0.0)
    per_step = extra / d.gradients_every + 2 * best["maps"] / args.steps
    ratio = per_step / step_time
    print(f"model: d_model={cfg.model.d_model} n_layers={cfg.model.n_layers} "
          f"seq={cfg.task.seq_len} batch={cfg.task.batch_size}; run {result.status}, "
          f"{args.steps} steps, diagnostics at defaults (every {d.gradients_every})")  # fmt: skip
    print(f"step time, fastest (median)          {1e3 * step_time:8.2f} ms "
          f"({1e3 * median_step:.2f} ms)")  # fmt: skip
    print(f"measured-step forward, before        {1e3 * best['old']:8.2f} ms")
    print(f"measured-step forward, now           {1e3 * best['new']:8.2f} ms")
    print(f"one set of attention maps            {1e3 * best['maps']:8.2f} ms")
    print(f"new cost per step                    {1e3 * per_step:8.3f} ms")
    print(f"ratio to the step time               {100 * ratio:8.2f} %  (target < {TARGET:.0%})")
    return 0 if ratio < TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

"""A quickstart step inside a sweep against a raw PyTorch loop of the same run, in one run.

First the first ``--trials`` trials of a fresh quickstart sweep run through the real
worker (``trial_profile.run_trials``: claim, ``objective.execute``, ``train_run``, tell;
one torch thread, as a 2-worker sweep on 2 cores gives each worker; W&B offline as the
spec says). Then, for each of those trials' configs (its ``config.yaml``), a raw loop:
bench's own model (:func:`bench.model.build_model`), AdamW and schedule
(:func:`bench.training.optimizer.build_optimizer`) and the same batches (the task's
training set through :class:`~bench.training.loader.ResumableLoader`), seeded as
``train_run`` seeds, for as many steps as the trial took: forward, cross-entropy,
backward, gradient clipping, step, schedule; nothing else. Both run in this process,
one after the other, so both see the same machine.

Printed per trial and as the mean over the steady trials (the first pays the
process's one-time costs and is shown apart):

- ``raw``: the raw loop's seconds per step;
- ``bench loop``: Lightning's training steps in the trial (forward to optimizer step,
  callbacks, logging, the loop) per step: no validation, no diagnostics at the end;
- ``bench trial``: the trial's whole wall time (data, run directory, W&B, validation,
  checkpoints, diagnostics, records, the study) per step, plus its share of a worker's
  process start (``--workers`` workers share the quickstart's 32 trials);
- the ratios of the two bench figures to ``raw``, and whether the raw loop's final
  training loss equals the trial's (the same computation, so it should);
- where a steady trial's time goes (``tools/trial_profile.py``'s phases).

``python tools/step_overhead.py [--trials 4] [--workers 2] [--tracking offline]``
Hold the measurement lock and note ``uptime`` around it: a busy machine inflates both.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import trial_profile  # noqa: E402  (a sibling script: its worker harness and timers)


@dataclass
class Trial:
    """One quickstart trial as the sweep ran it, and the raw loop of its config."""

    run_dir: Path
    steps: int
    wall: float  # the trial in the worker, claim to tell
    phases: dict[str, float]  # trial_profile's exclusive seconds per phase
    loop: float  # Lightning's training steps (trial_profile's "training steps" phase)
    train_loss: float  # the trial's last logged train/loss
    raw: float = math.nan  # seconds of the raw loop over the same steps
    raw_loss: float = math.nan


def raw_loop(run_dir: Path, steps: int) -> tuple[float, float]:
    """(seconds, last loss) of ``steps`` raw training steps of the run's config."""
    import lightning as L
    import torch
    import torch.nn.functional as F

    from bench.config import RunConfig, load_yaml
    from bench.model import build_model
    from bench.tasks.vocab import IGNORE
    from bench.training.loader import ResumableLoader
    from bench.training.module import forward_logits
    from bench.training.optimizer import build_optimizer
    from bench.training.prepare import prepare

    cfg = RunConfig.model_validate(load_yaml(run_dir / "config.yaml"))
    prep = prepare(cfg)
    cfg, t = prep.cfg, prep.cfg.train
    torch.set_num_threads(1)
    L.seed_everything(t.seed, workers=True, verbose=False)  # as train_run seeds
    model = build_model(cfg.model, t.parameterization, t.mup_base_width)
    opt, sched = build_optimizer(model, t)
    params = [p for group in opt.param_groups for p in group["params"]]
    train_set = prep.datamodule.train_dataloader()
    loader = ResumableLoader(
        train_set.dataset,  # type: ignore[arg-type]  # every task's datasets are map-style
        cfg.task.batch_size,
        train_set.collate_fn,
        seed=t.seed,
    )
    autocast = torch.autocast("cpu", torch.bfloat16, enabled=prep.precision == "bf16-mixed")
    model.train()
    loss = torch.zeros(())
    done, start = 0, time.perf_counter()
    while done < steps:
        for batch in loader:
            with autocast:
                logits = forward_logits(model, batch).flatten(0, 1).float()
            loss = F.cross_entropy(logits, batch["labels"].flatten(), ignore_index=IGNORE)
            loss.backward()
            if t.grad_clip is not None:  # over the optimizer's parameters, as Lightning clips
                torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            done += 1
            if done == steps:
                break
    return time.perf_counter() - start, float(loss.detach())


def last_train_loss(run_dir: Path) -> float:
    """The run's last logged ``train/loss`` (``metrics.csv``)."""
    from bench.run import Run

    values = [row["train/loss"] for row in Run.load(run_dir).history() if "train/loss" in row]
    return values[-1] if values else math.nan


def sweep_trials(n: int, tracking: str, tmp: Path) -> list[Trial]:
    """The first ``n`` trials of a fresh quickstart sweep, timed in the real worker."""
    run_dirs: list[Path] = []
    timed = trial_profile.run_trials(n, tracking, tmp, run_dirs=run_dirs)
    out = []
    for (wall, phases), run_dir in zip(timed, run_dirs, strict=True):
        summary = json.loads((run_dir / "summary.json").read_text())
        loop = phases.get("training steps", math.nan)
        steps = int(summary["steps"])
        out.append(Trial(run_dir, steps, wall, phases, loop, last_train_loss(run_dir)))
    return out


def ms(seconds: float, steps: int) -> float:
    return 1000 * seconds / steps


def lines(trials: list[Trial], start_share: float) -> list[str]:
    """A row per trial, then the steady trials' means and ratios."""
    rows = [
        f"{'trial':<40} {'steps':>5} {'raw':>8} {'loop':>8} {'trial':>8}"
        f" {'loop/raw':>8} {'trial/raw':>9}  same final loss"
    ]
    for t in trials:
        trial_ms = ms(t.wall + start_share, t.steps)
        rows.append(
            f"{t.run_dir.name:<40} {t.steps:>5} {ms(t.raw, t.steps):>6.2f}ms"
            f" {ms(t.loop, t.steps):>6.2f}ms {trial_ms:>6.2f}ms"
            f" {t.loop / t.raw:>8.2f} {trial_ms / ms(t.raw, t.steps):>9.2f}"
            f"  {t.train_loss:.6g} vs {t.raw_loss:.6g}"
        )
    steady = trials[1:]
    raw = statistics.mean(ms(t.raw, t.steps) for t in steady)
    loop = statistics.mean(ms(t.loop, t.steps) for t in steady)
    whole = statistics.mean(ms(t.wall + start_share, t.steps) for t in steady)
    rows.append(
        f"steady trials (mean of {len(steady)}): raw loop {raw:.2f} ms a step; bench's loop"
        f" {loop:.2f} ms ({loop / raw:.2f}x raw); bench's whole trial {whole:.2f} ms a step"
        f" ({whole / raw:.2f}x raw)"
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=4, help="trials to run (the first is warm-up)")
    p.add_argument("--workers", type=int, default=2, help="workers the start-up is shared by")
    p.add_argument("--tracking", default="offline", choices=("offline", "disabled"))
    args = p.parse_args(argv)
    if args.trials < 2 or args.workers < 1:
        print("error: --trials must be >= 2 and --workers >= 1", file=sys.stderr)
        return 2
    started = trial_profile.process_start()
    share = started / trial_profile.trials_per_worker(args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        trials = sweep_trials(args.trials, args.tracking, Path(tmp))
        for t in trials:
            t.raw, t.raw_loss = raw_loop(t.run_dir, t.steps)
    print(f"process start: {started:.2f} s once a worker, {share:.3f} s a trial")
    print("\n".join(lines(trials, share)))
    wall, phases = trial_profile.mean_phases([(t.wall, t.phases) for t in trials[1:]])
    print(f"where a steady trial's {wall:.2f} s go (trial_profile's phases):")
    print("\n".join(trial_profile.breakdown(wall, phases, share)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``bench variants``, ``bench train`` and ``bench throughput``: one configuration at a time."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from bench import redact
from bench.cli.registry import (
    command,
    config_args,
    load_run_config,
    quiet_lightning,
    split_config_args,
)
from bench.config import ConfigError, RunConfig
from bench.extras import check_run_config
from bench.sweeps.args import EXIT_PREEMPTED

# ----------------------------------------------------------------------------- variants


@command("variants", "list every architecture axis and every preset", lambda p: None)
def cmd_variants(args: argparse.Namespace) -> int:
    from bench.config import ModelConfig, TaskConfig, TrainConfig, axes, presets
    from bench.config.citations import CITATIONS
    from bench.config.task import TASKS_DESCRIBED

    defaults = ModelConfig()
    # one column for every key, as wide as the longest (train.decay_norms_and_embeddings)
    w = max(len(n) for n in (*ModelConfig.model_fields, *TrainConfig.model_fields))
    print("Axes (model.FIELD: allowed values; * marks the default)")
    for name, values in axes().items():
        shown = ", ".join(f"{v}*" if v == getattr(defaults, name) else str(v) for v in values)
        print(f"  model.{name:<{w}} {shown}")
    print("\nSizes (model.FIELD=N; default in brackets)")
    for name, info in ModelConfig.model_fields.items():
        if name not in axes() and info.description:
            default = "" if info.default is None else f" [{info.default}]"
            print(f"  model.{name:<{w}} {info.description}{default}")
    print("\nTraining (train.FIELD=VALUE; default in brackets)")
    for name, info in TrainConfig.model_fields.items():
        if info.description:
            print(f"  train.{name:<{w}} {info.description} [{info.default}]")
    print("\nPapers (axis values and options added with their source)")
    for key, cite in CITATIONS.items():
        print(f"  {key:<28} {cite}")
    print("\nTasks (task.name=NAME; * marks the default)")
    for name, what in TASKS_DESCRIBED.items():
        print(f"  {name + ('*' if name == TaskConfig().name else ''):<10} {what}")
    print("\nPresets (variant=NAME; what each sets)")
    for name in presets.names():
        sets = " ".join(f"{k}={v}" for k, v in presets.load(name).items())
        desc = presets.description(name)
        print(f"  {name:<12} {sets}")
        if desc:
            print(f"  {'':<12} {desc}")
    return 0


# ----------------------------------------------------------------------------- train


# `bench train` with no settings at all: a first run sized to learn its task in well under
# a minute on 2 CPU cores: the quickstart's model (d_model 32, pre-LN, learned positions:
# the config defaults otherwise) and learning rate on copy of 8 symbols out of 12 (the
# quickstart's pre/learned cell reached val/loss 0.0002-0.04 in 400 steps at lr 2e-3 to
# 6e-2). Only a bare `bench train` uses it: the config defaults, which every sweep spec,
# claim file and `bench.train()` resolve against, are not changed by it; any setting given
# starts from those defaults (tests/test_train_first_run.py checks both).
FIRST_RUN = (
    "task.name=copy",
    "task.seq_len=8",
    "task.n_symbols=12",
    "model.d_model=32",
    "train.lr=1e-2",
    "train.warmup_steps=20",
    "train.max_steps=400",
    "train.val_every=50",
)


def _train_args(p: argparse.ArgumentParser) -> None:
    config_args(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")


@command("train", "train one configuration and write a run directory", _train_args)
def cmd_train(args: argparse.Namespace) -> int:
    from bench.training.slurm_job import batch_job

    cmdline = redact.command(["bench", *sys.argv[1:]])
    if not args.args and not args.resume:
        args.args = list(FIRST_RUN)
        print(f"bench train with no settings: a first run that learns its task in under a "
              f"minute ({' '.join(FIRST_RUN)}); give any setting to start from the config "
              "defaults instead (bench variants lists them)", file=sys.stderr)  # fmt: skip
    job = batch_job()
    # the config is checked before torch and Lightning load: a typo costs no start-up time
    todo = _what_to_train(args, job)
    if isinstance(todo, Path):
        print(f"Slurm job {job} was requeued: {todo} had already finished", file=sys.stderr)
        return 0
    cfg, resume = todo
    check_run_config(cfg)  # a missing optional package: before torch loads too
    from bench.training.prepare import prepare

    prepared = prepare(cfg, resume)  # the data too, with torch but before Lightning loads
    quiet_lightning()
    from bench.cli.run_table import print_run_summary
    from bench.training.preemption import PREEMPTION, Preempted
    from bench.training.run import RunInterrupted, train_run

    if job is not None:
        PREEMPTION.install()  # Slurm's signals: checkpoint at the next step, stop, requeue
    try:
        result = train_run(cfg, resume=resume, command=cmdline, prepared=prepared)
    except KeyboardInterrupt as e:  # even before training started: the same run resumes
        if resume is None or isinstance(e, RunInterrupted):
            raise
        raise RunInterrupted(resume) from None
    except Preempted as e:
        return _preempted(e, Path(str(cfg.tracking.run_dir)), job)
    print_run_summary(result)
    return 0 if result.status in ("completed", "stopped") else 1


def _what_to_train(
    args: argparse.Namespace, job: str | None
) -> tuple[RunConfig, Path | None] | Path:
    """(config, run directory to resume or None): ``--resume``, a requeued Slurm job's own
    run, or a new run; the run directory alone when the requeued job's run had finished."""
    from bench.config import build_run_config
    from bench.run import Run
    from bench.training.slurm_job import job_run_dir, ranks_stamp, remember

    if args.resume:
        run_dir = Path(args.resume)
        cfg_path = run_dir / "config.yaml"
        if not Run.is_run_dir(run_dir):
            raise ConfigError(f"--resume {run_dir}: not a run directory (no config.yaml)")
        if Run(run_dir).finished:
            raise ConfigError(f"--resume {run_dir}: the run already finished (summary.json exists)")
        return build_run_config(cfg_path, args.args), run_dir
    cfg = load_run_config(args.args)
    if job is None:
        return cfg, None
    earlier = job_run_dir(cfg.tracking.out_dir, job, args.args)
    if earlier is not None and Run(earlier).finished:
        return earlier
    if earlier is not None and Run(earlier).resumable:
        print(f"Slurm job {job} was requeued: resuming {earlier}", file=sys.stderr)
        return build_run_config(earlier / "config.yaml"), earlier
    if not cfg.tracking.run_dir:
        from bench.training.rundir import new_run_dir

        stamp = ranks_stamp(job, cfg.train.devices, cfg.train.nodes)
        cfg.tracking.run_dir = str(new_run_dir(cfg, stamp=stamp))
    remember(cfg.tracking.out_dir, job, args.args, Path(cfg.tracking.run_dir))
    return cfg, None


def _preempted(e: BaseException, run_dir: Path, job: str | None) -> int:
    """One line on what a preemption signal did; exit 75 (EX_TEMPFAIL: run again later)."""
    from bench.training.preemption import Preempted
    from bench.training.slurm_job import requeue

    assert isinstance(e, Preempted)
    name = signal.Signals(e.signum).name
    where = f"at step {e.step}: checkpointed" if e.step is not None else "before training:"
    if job is not None and e.pre_timeout and requeue(job):
        then = f"requeued Slurm job {job}, which resumes this run"
    else:
        then = f"resume with: bench train --resume {run_dir}"
    print(f"preempted by {name} {where} {run_dir}; {then}", file=sys.stderr)
    return EXIT_PREEMPTED


# ----------------------------------------------------------------------------- throughput


def _throughput_args(p: argparse.ArgumentParser) -> None:
    config_args(p)
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="also run the config with each value of KEY (repeatable; e.g. "
        "model.pos_encoding=rope,alibi,t5 or variant=llama,sandwich)",
    )
    p.add_argument(
        "--steps", type=int, default=3, help="timed steps per config in each round (default 3)"
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=9,
        help="interleaved rounds (>= 5; default 9): each row is the median over its rounds, "
        "with an order-statistic interval",
    )
    p.add_argument("--csv", metavar="FILE", help="also write the table as CSV")


def throughput_configs(args: list[str], vary: list[str]) -> list[tuple[str, RunConfig]]:
    """The base config, then one per ``KEY=V1,V2`` value, named by what differs."""
    from bench.config import build_run_config, parse_value

    path, overrides = split_config_args(args)
    configs = [("base", build_run_config(path, overrides))]
    for spec in vary:
        key, sep, values = spec.partition("=")
        if not sep or not key or not values:
            raise ConfigError(
                f"--vary {spec!r}: expected KEY=V1,V2 (e.g. model.pos_encoding=rope,alibi)"
            )
        for value in values.split(","):
            extra = f"{key}={value}"
            parse_value(value)
            configs.append((extra, build_run_config(path, [*overrides, extra])))
    return configs


@command(
    "throughput",
    "tokens/s (median of interleaved rounds, with an interval), FLOP/s and MFU, side by side",
    _throughput_args,
)
def cmd_throughput(args: argparse.Namespace) -> int:
    from bench.diagnostics.throughput.median_interval import MIN_ROUNDS

    if args.steps < 1:
        raise ConfigError(f"--steps={args.steps}: allowed: an integer >= 1")
    if args.rounds < MIN_ROUNDS:
        raise ConfigError(f"--rounds={args.rounds}: allowed: an integer >= {MIN_ROUNDS}")
    if args.csv:
        csv = Path(args.csv)
        if csv.is_dir() or not csv.parent.is_dir():
            raise ConfigError(f"--csv {csv}: allowed: a file path in an existing directory")
    configs = throughput_configs(args.args, args.vary)  # checked before torch loads
    for _, cfg in configs:
        check_run_config(cfg)
    import torch

    from bench.cli.throughput import format_table, run_throughput
    from bench.training.precision import choose_precision
    from bench.training.resources import check_fits

    accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    for name, cfg in configs:  # before any model is built
        check_fits(cfg, accelerator)
        if cfg.train.precision == "auto":  # what bench train would pick for it
            choice = choose_precision(cfg, accelerator)
            cfg.train.precision = choice.precision  # type: ignore[assignment]  # a Precision
            print(f"{name}: precision {choice.precision} ({choice.reason})")
    csv_path = Path(args.csv) if args.csv else None
    rows = run_throughput(configs, steps=args.steps, rounds=args.rounds, csv_path=csv_path)
    print(format_table(rows))
    base = rows[0]
    for row in rows[1:]:
        apart = (
            row["tokens_per_sec_low"] > base["tokens_per_sec_high"]
            or row["tokens_per_sec_high"] < base["tokens_per_sec_low"]
        )
        verdict = "intervals apart" if apart else "intervals overlap: not told apart"
        print(
            f"{row['name']}: {row['tokens_per_sec'] / base['tokens_per_sec']:.2f}x "
            f"the base's tokens/s ({verdict})"
        )
    return 0

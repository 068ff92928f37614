"""The ``bench`` command: one sub-command per job, each a small function.

Every sub-command that trains takes ``[CONFIG.yaml] [key=value ...]`` and goes
through :func:`bench.config.build_run_config`. A user's mistake (ConfigError)
becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from bench import redact
from bench.config import ConfigError, RunConfig
from bench.sweeps.args import add_dashboard_arguments, add_sweep_arguments, add_worker_arguments

COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str, help: str, add_args: Callable[[argparse.ArgumentParser], None]):
    """Register ``fn(args) -> int`` as ``bench NAME``."""

    def wrap(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, add_args, fn)
        return fn

    return wrap


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "args",
        nargs="*",
        metavar="[CONFIG.yaml] [key=value ...]",
        help="a YAML config, then dotted overrides (model.pos_encoding=rope, variant=llama)",
    )


def quiet_lightning() -> None:
    """Lightning's start-up banners (GPU/TPU available, tips) drown a run's own output."""
    import lightning  # noqa: F401 - sets its loggers to INFO on import; we override after

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def split_config_args(args: list[str]) -> tuple[str | None, list[str]]:
    """``[CONFIG.yaml] [key=value ...]`` -> (path or None, overrides)."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def load_run_config(args: list[str]):
    from bench.config import build_run_config

    path, overrides = split_config_args(args)
    return build_run_config(path, overrides)


# ----------------------------------------------------------------------------- variants


@command("variants", "list every architecture axis and every preset", lambda p: None)
def cmd_variants(args: argparse.Namespace) -> int:
    from bench import presets
    from bench.config import ModelConfig, axes

    defaults = ModelConfig()
    print("Axes (model.FIELD: allowed values; * marks the default)")
    for name, values in axes().items():
        shown = ", ".join(f"{v}*" if v == getattr(defaults, name) else str(v) for v in values)
        print(f"  model.{name:<16} {shown}")
    print("\nPresets (variant=NAME; what each sets)")
    for name in presets.names():
        sets = " ".join(f"{k}={v}" for k, v in presets.load(name).items())
        desc = presets.description(name)
        print(f"  {name:<12} {sets}")
        if desc:
            print(f"  {'':<12} {desc}")
    return 0


# ----------------------------------------------------------------------------- train


def _train_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")


@command("train", "train one configuration and write a run directory", _train_args)
def cmd_train(args: argparse.Namespace) -> int:
    from bench.cli.run_table import print_run_summary
    from bench.config import build_run_config
    from bench.training.run import RunInterrupted, train_run

    quiet_lightning()
    cmdline = redact.command(["bench", *sys.argv[1:]])
    if args.resume:
        run_dir = Path(args.resume)
        cfg_path = run_dir / "config.yaml"
        if not cfg_path.is_file():
            raise ConfigError(f"--resume {run_dir}: not a run directory (no config.yaml)")
        if (run_dir / "summary.json").is_file():
            raise ConfigError(f"--resume {run_dir}: the run already finished (summary.json exists)")
        cfg = build_run_config(cfg_path, args.args)
        try:
            result = train_run(cfg, resume=run_dir, command=cmdline)
        except KeyboardInterrupt as e:  # even before training started: the same run resumes
            raise e if isinstance(e, RunInterrupted) else RunInterrupted(run_dir) from None
    else:
        cfg = load_run_config(args.args)
        result = train_run(cfg, command=cmdline)
    print_run_summary(result)
    return 0 if result.status in ("completed", "stopped") else 1


# ----------------------------------------------------------------------------- throughput


def _throughput_args(p: argparse.ArgumentParser) -> None:
    _config_args(p)
    p.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="also run the config with each value of KEY (repeatable; e.g. "
        "model.pos_encoding=rope,alibi,t5 or variant=llama,sandwich)",
    )
    p.add_argument(
        "--steps", type=int, default=20, help="timed steps per config (the fastest counts)"
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
    "tokens/s, FLOP/s and fraction of the measured matmul peak, side by side",
    _throughput_args,
)
def cmd_throughput(args: argparse.Namespace) -> int:
    from bench.diagnostics.throughput import format_table, run_throughput

    if args.steps < 1:
        raise ConfigError(f"--steps={args.steps}: allowed: an integer >= 1")
    if args.csv:
        csv = Path(args.csv)
        if csv.is_dir() or not csv.parent.is_dir():
            raise ConfigError(f"--csv {csv}: allowed: a file path in an existing directory")
    configs = throughput_configs(args.args, args.vary)
    import torch

    from bench.training.resources import check_fits

    for _, cfg in configs:  # before any model is built
        check_fits(cfg, "gpu" if torch.cuda.is_available() else "cpu")
    rows = run_throughput(configs, steps=args.steps, csv_path=Path(args.csv) if args.csv else None)
    print(format_table(rows))
    base = rows[0]["tokens_per_sec"]
    for row in rows[1:]:
        print(f"{row['name']}: {row['tokens_per_sec'] / base:.2f}x the base's tokens/s")
    return 0


# ----------------------------------------------------------------------------- sweeps


@command(
    "sweep",
    "run (or resume) a sweep: one worker per GPU or CPU slot",
    add_sweep_arguments,
)
def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.sweeps.args import SLURM_FLAGS
    from bench.sweeps.layout import resolve_spec

    cmdline = redact.command(["bench", *sys.argv[1:]])
    spec_launcher = resolve_spec(args.spec)[0].launcher
    launcher = args.launcher or spec_launcher.name
    given = {k: getattr(args, k) for k in SLURM_FLAGS if getattr(args, k) is not None}
    if launcher == "slurm" or args.cancel:
        from bench.sweeps.slurm import cancel_sweep, submit_sweep

        if args.cancel:
            return cancel_sweep(args.spec, args.out)
        if args.devices is not None or args.dry_run:
            flag = "--devices" if args.devices is not None else "--dry-run"
            raise ConfigError(f"{flag}: only with the local launcher; Slurm places the workers")
        return submit_sweep(
            args.spec, {**given, "workers": args.workers}, args.storage, args.out, cmdline
        )
    if given:
        flag = "--" + next(iter(given)).replace("_", "-")
        raise ConfigError(f"{flag}: a Slurm option; allowed only with --launcher slurm")
    from bench.sweeps.launcher import run_sweep

    return run_sweep(
        args.spec,
        args.workers if args.workers is not None else spec_launcher.workers,
        args.devices,
        args.storage,
        args.out,
        command=cmdline,
        dry_run=args.dry_run,
        extend=args.extend,
    )


@command(
    "worker",
    "join a sweep as one worker (e.g. on another machine, with --storage postgresql://...)",
    add_worker_arguments,
)
def cmd_worker(args: argparse.Namespace) -> int:
    quiet_lightning()
    from bench.sweeps.worker import run_from_args

    return run_from_args(args)


def _status_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="SWEEP_DIR", help="a sweep directory, or a storage URL")
    p.add_argument(
        "--storage", metavar="URL", help="the sweep's storage, if not the one in sweep.json"
    )


@command("status", "progress of a sweep, per cell", _status_args)
def cmd_status(args: argparse.Namespace) -> int:
    from bench.sweeps.status import print_status

    return print_status(args.target, args.storage)


@command(
    "dashboard",
    "serve optuna-dashboard on a sweep's storage",
    add_dashboard_arguments,
)
def cmd_dashboard(args: argparse.Namespace) -> int:
    from bench.sweeps.dashboard import start_dashboard

    return start_dashboard(args.sweep, args.host, args.port, args.storage)


# ----------------------------------------------------------------------------- ls


def _ls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "where",
        nargs="*",
        metavar="[DIR] [key=value ...]",
        help="a directory of runs (default: runs), then filters such as norm_placement=pre",
    )
    p.add_argument("--status", action="append", help="only this status (repeatable)")
    p.add_argument("--task", action="append", help="only this task (repeatable)")
    p.add_argument(
        "--sort",
        default="started",
        help="started (default), name, task, status, steps, best or duration",
    )
    p.add_argument("--reverse", action="store_true", help="reverse the order")


@command("ls", "runs and sweeps under runs/ (or DIR): status, steps, best objective", _ls_args)
def cmd_ls(args: argparse.Namespace) -> int:
    from bench.listing import list_runs

    dirs = [w for w in args.where if "=" not in w]
    if len(dirs) > 1:
        raise ConfigError(f"{dirs[1]}: one DIR only (filters are key=value)")
    filters = [w for w in args.where if "=" in w]
    return list_runs(
        dirs[0] if dirs else "runs", args.status, args.task, filters, args.sort, args.reverse
    )


# ----------------------------------------------------------------------------- compare


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "targets",
        nargs="+",
        metavar="RUN_OR_SWEEP",
        help="run directories and sweep directories (a sweep gives one column per cell)",
    )
    p.add_argument(
        "--out", metavar="DIR", help="where compare.png goes (default: reports/compare-<time>)"
    )


@command(
    "compare",
    "runs or sweep cells side by side: config differences, metrics, curves",
    _compare_args,
)
def cmd_compare(args: argparse.Namespace) -> int:
    from bench.compare import compare

    return compare(args.targets, args.out)


# ----------------------------------------------------------------------------- export


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep directory")
    p.add_argument(
        "--format", default="csv", help="csv (default), jsonl or parquet (needs pyarrow)"
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="output file (default: <sweep name>-runs.<format>; - for stdout)",
    )
    p.add_argument(
        "--storage", metavar="URL", help="the sweep's storage, if not the one in sweep.json"
    )


@command(
    "export", "a sweep's runs as one table (the report's): csv, jsonl or parquet", _export_args
)
def cmd_export(args: argparse.Namespace) -> int:
    from bench.export import export

    return export(args.sweep_dir, args.format, args.out, args.storage)


# ----------------------------------------------------------------------------- report


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep_dir", metavar="SWEEP_DIR", help="a sweep directory (bench sweep --out)")
    p.add_argument("--out", metavar="DIR", help="report directory (default: reports/<sweep name>)")
    p.add_argument(
        "--storage", metavar="URL", help="the sweep's storage, if not the one in sweep.json"
    )
    p.add_argument(
        "--wandb", action="store_true", help="also publish to W&B (online, needs a login)"
    )


@command("report", "turn a sweep into a report: HTML, Markdown, figures, runs.csv", _report_args)
def cmd_report(args: argparse.Namespace) -> int:
    from bench.report import build_report

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = build_report(args.sweep_dir, args.out, wandb=args.wandb, storage=args.storage)
    for w in caught:
        if w.category.__name__ == "ReportTrackingWarning":
            print(f"bench report: warning: {w.message}", file=sys.stderr)
    print(out / "index.html")
    return 0


# ----------------------------------------------------------------------------- reproduce


def _reproduce_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "claims", nargs="*", metavar="CLAIM", help="claim ids or claim files (default: all)"
    )
    p.add_argument(
        "--budget",
        default="quick",
        help="quick (exercises the pipeline, verdicts may be inconclusive) or full",
    )
    p.add_argument("--workers", type=int, help="worker processes per claim sweep (default: 1)")
    p.add_argument("--storage", metavar="URL", help="one Optuna storage for every claim sweep")
    p.add_argument("--runs", metavar="DIR", help="sweep directories (default: runs/claims/BUDGET)")
    p.add_argument(
        "--out", metavar="DIR", help="report directory (default: reports/claims[-offsetK])"
    )
    p.add_argument(
        "--seed-offset",
        type=int,
        default=0,
        help="rerun with fresh training seeds: every seed + 1000 x K (default 0)",
    )
    p.add_argument(
        "--judge-only", action="store_true", help="judge the sweeps as they are; run nothing"
    )


@command(
    "reproduce",
    "run published claims about architecture choices as sweeps; a verdict per claim",
    _reproduce_args,
)
def cmd_reproduce(args: argparse.Namespace) -> int:
    from bench.claims.reproduce import reproduce

    return reproduce(
        args.claims,
        args.budget,
        args.workers,
        args.storage,
        args.runs,
        args.out,
        args.seed_offset,
        args.judge_only,
    )


# ----------------------------------------------------------------------------- landscape


def _landscape_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished or checkpointed run directory")
    p.add_argument("--resolution", type=int, help="grid points a side (default: the run's config)")
    p.add_argument(
        "--batches", type=int, help="evaluation batches per grid point (default: config)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions")


@command(
    "landscape", "loss landscape of a run: interpolation, random and PCA planes", _landscape_args
)
def cmd_landscape(args: argparse.Namespace) -> int:
    quiet_lightning()
    from bench.posthoc import landscape_of_run, planes_line

    summary, out = landscape_of_run(Path(args.run_dir), args.resolution, args.batches, args.seed)
    for key, value in summary.items():
        print(f"{key:<32} {value:.4g}")
    print(planes_line(summary, out / "trajectory.npz"))
    print(out)
    return 0


# ----------------------------------------------------------------------------- attention


def _attention_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "run_dir", metavar="RUN_DIR", help="a run directory with recorded attention maps"
    )
    p.add_argument("--step", type=int, help="a recorded step (default: the last; 0 is at init)")
    p.add_argument("--example", type=int, default=0, help="which recorded validation example")
    p.add_argument(
        "--out", metavar="FILE.png", help="where to draw (default: in RUN_DIR/diagnostics)"
    )


@command(
    "attention", "draw a run's attention maps: one heatmap per layer and head", _attention_args
)
def cmd_attention(args: argparse.Namespace) -> int:
    from bench.diagnostics.attention_plot import draw_attention

    print(draw_attention(Path(args.run_dir), args.step, args.example, args.out))
    return 0


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bench", description="Which transformer architecture choice, and why.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (help_text, add_args, fn) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(fn=fn)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bench`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        return int(args.fn(args) or 0)
    except ConfigError as e:
        print(f"bench {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        from bench.records import os_problem

        problem = os_problem(e)
        if problem is None:
            raise
        print(f"bench {args.command}: error: {problem[1]}", file=sys.stderr)
        return problem[0]
    except KeyboardInterrupt as e:
        print(f"bench {args.command}: {interrupted_message(args.command, e)}", file=sys.stderr)
        return 130


def interrupted_message(command: str, e: KeyboardInterrupt) -> str:
    """What to say after Ctrl-C: the exact command that resumes, where there is one."""
    run_dir = getattr(e, "run_dir", None)
    if run_dir is not None:
        if getattr(e, "resumable", False):
            return f"interrupted; resume with: bench train --resume {shlex.quote(str(run_dir))}"
        return f"interrupted before the first checkpoint; {run_dir} cannot be resumed"
    if command in ("sweep", "worker"):
        return "interrupted; rerun the same command to resume"
    return "interrupted"

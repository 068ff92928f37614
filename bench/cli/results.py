"""What runs and sweeps produced: ``bench ls``, ``compare``, ``export``, ``report``, ``reproduce``."""

from __future__ import annotations

import argparse
import sys
import warnings

from bench.cli.registry import command
from bench.config import ConfigError

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
    from bench.sweeps.layout import open_sweep_dir

    open_sweep_dir(args.sweep_dir, args.storage)  # a wrong directory costs no heavy imports
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
        help="quick (the default: exercises the pipeline, verdicts may be inconclusive) or full",
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
    from bench.claims.spec import check_request

    # the options and every named claim first: a mistake costs no Optuna or SciPy start-up
    check_request(args.claims, args.budget, args.seed_offset, args.workers)
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

"""``bench sweep``, ``bench worker``, ``bench status`` and ``bench dashboard``."""

from __future__ import annotations

import argparse
import sys

from bench import redact
from bench.cli.registry import command, quiet_lightning
from bench.config import ConfigError
from bench.sweeps.args import add_dashboard_arguments, add_sweep_arguments, add_worker_arguments

# ----------------------------------------------------------------------------- sweeps


@command(
    "sweep",
    "run (or resume) a sweep: one worker per GPU or CPU slot",
    add_sweep_arguments,
)
def cmd_sweep(args: argparse.Namespace) -> int:
    from bench.sweeps.args import SLURM_FLAGS, check_numbers
    from bench.sweeps.layout import resolve_spec

    check_numbers(workers=args.workers)  # plain checks first: no torch or Optuna yet
    cmdline = redact.command(["bench", *sys.argv[1:]])
    spec_launcher = resolve_spec(args.spec)[0].launcher
    launcher = args.launcher or spec_launcher.name
    given = {k: getattr(args, k) for k in SLURM_FLAGS if getattr(args, k) is not None}
    if launcher == "slurm" or args.cancel:
        from bench.sweeps.slurm.launcher import cancel_sweep, dry_run_slurm, submit_sweep

        if args.cancel:
            return cancel_sweep(args.spec, args.out)
        if args.devices is not None:
            raise ConfigError("--devices: only with the local launcher; Slurm places the workers")
        if args.dry_run:
            return dry_run_slurm(args.spec, {**given, "workers": args.workers})
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
    from bench.sweeps.args import check_numbers
    from bench.sweeps.layout import resolve_spec

    # a wrong spec path, spec or number costs no torch start-up
    check_numbers(threads=args.threads, deadline=args.deadline)
    resolve_spec(args.spec)
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
    from bench.sweeps.layout import sweep_or_storage

    sweep_or_storage(args.target, journal_file=True)  # before Optuna loads
    from bench.sweeps.progress.status import print_status

    return print_status(args.target, args.storage)


@command(
    "dashboard",
    "serve optuna-dashboard on a sweep's storage",
    add_dashboard_arguments,
)
def cmd_dashboard(args: argparse.Namespace) -> int:
    from bench.sweeps.layout import sweep_or_storage

    sweep_or_storage(args.sweep)  # before Optuna and optuna-dashboard load
    from bench.sweeps.progress.dashboard import start_dashboard

    return start_dashboard(args.sweep, args.host, args.port, args.storage)

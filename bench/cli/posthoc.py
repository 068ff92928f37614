"""``bench landscape``, ``bench attention`` and ``bench figures``: a finished run's
directory, after the fact."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.registry import command, quiet_lightning

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
    from bench.config.diagnostics import check_landscape_options
    from bench.run import last_checkpoint

    # plain checks first: a wrong directory or option costs no torch start-up
    check_landscape_options(args.resolution, args.batches)
    last_checkpoint(Path(args.run_dir))
    quiet_lightning()
    from bench.training.posthoc import landscape_of_run, planes_line

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
    from bench.config import ConfigError
    from bench.run import Run

    # the path first, in plain Python: a wrong directory costs no numpy or torch start-up
    run_dir = Path(args.run_dir)
    if not run_dir.exists():
        raise ConfigError(f"{run_dir}: no such directory; expected a run directory")
    if not Run.is_run_dir(run_dir):
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    if args.out is not None and Path(args.out).suffix.lower() != ".png":
        raise ConfigError(f"--out {args.out}: the figure is a PNG; give a path ending in .png")
    from bench.diagnostics.attention.plot import draw_attention

    print(draw_attention(Path(args.run_dir), args.step, args.example, args.out))
    return 0


# ----------------------------------------------------------------------------- figures


def _run_dirs(paths: list[str]) -> list[Path]:
    """Each path a run directory, or a sweep's (every run in it); anything else is a
    ConfigError naming the path, before anything is drawn."""
    from bench.config import ConfigError
    from bench.run import Run
    from bench.sweeps.layout import RUNS, is_sweep_dir

    out: list[Path] = []
    for path in map(Path, paths):
        if is_sweep_dir(path):
            out += sorted(p for p in (path / RUNS).glob("*") if Run.is_run_dir(p))
        elif Run.is_run_dir(path):
            out.append(path)
        elif not path.exists():
            raise ConfigError(f"{path}: no such directory; expected a run or a sweep directory")
        else:
            raise ConfigError(
                f"{path}: neither a run directory (no config.yaml) nor a sweep directory (no sweep.json)"
            )
    return out


def _figures_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="DIR", help="run directories or sweep directories")
    p.add_argument("--overwrite", action="store_true", help="redraw figures that already exist")


@command(
    "figures",
    "draw the diagnostics' figures of runs from their data (diagnostics.figures=false runs)",
    _figures_args,
)
def cmd_figures(args: argparse.Namespace) -> int:
    from bench import records

    run_dirs = _run_dirs(args.paths)  # every path checked before numpy and matplotlib load
    from bench.diagnostics.run_figures import draw_run_figures

    for run_dir in run_dirs:
        drawn = draw_run_figures(run_dir / records.DIAGNOSTICS, overwrite=args.overwrite)
        print(f"{run_dir}: {len(drawn)} figures drawn")
    return 0

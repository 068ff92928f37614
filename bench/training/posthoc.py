"""A finished run rebuilt from its checkpoint, and diagnostics on it (``bench landscape RUN_DIR``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from bench import records
from bench.config import build_run_config
from bench.run import Run, last_checkpoint
from bench.tasks.base import BenchDataModule
from bench.training.checkpoint import load_checkpoint
from bench.training.module import BenchModule
from bench.training.prepare import prepare


def load_run(run_dir: Path) -> tuple[BenchModule, Any, dict[str, Any]]:
    """(module with the last checkpoint's weights, its datamodule, the checkpoint)."""
    # first: a missing or bad file is refused before any work
    ckpt = load_checkpoint(last_checkpoint(run_dir))
    prep = prepare(build_run_config(run_dir / records.CONFIG))
    dm = prep.datamodule
    assert isinstance(dm, BenchDataModule)
    module = BenchModule(prep.cfg, dm.eval_lengths)
    module.load_state_dict(ckpt["state_dict"])
    return module, prep.datamodule, ckpt


def initial_weights(module: BenchModule) -> torch.Tensor:
    """The run's weights at step 0, rebuilt from its seed exactly as train_run built them."""
    from bench.diagnostics.parameters import flatten_params, trainable_params

    L.seed_everything(module.cfg.train.seed, workers=True, verbose=False)
    fresh = BenchModule(module.cfg, module.eval_lengths)
    return flatten_params(trainable_params(fresh))


def landscape_of_run(
    run_dir: Path, resolution: int | None = None, n_batches: int | None = None, seed: int = 0
) -> tuple[dict[str, float], Path]:
    """Interpolation from init, a random plane and (with a saved trajectory) a PCA plane.

    Writes into ``RUN_DIR/diagnostics`` and returns the summary numbers and that folder.
    """
    from bench.config.diagnostics import check_landscape_options
    from bench.diagnostics import landscape_of
    from bench.diagnostics.landscape import load_trajectory

    check_landscape_options(resolution, n_batches)
    module, dm, _ = load_run(run_dir)
    traj_path = run_dir / records.DIAGNOSTICS / "trajectory.npz"
    if traj_path.is_file():
        theta_init = torch.from_numpy(load_trajectory(traj_path).params[0])
    else:
        theta_init = initial_weights(module)
    summary = landscape_of(
        module, dm, run_dir, theta_init, resolution, n_batches, seed, figures=True
    )
    record_metrics(run_dir, summary)
    return summary, run_dir / records.DIAGNOSTICS


def record_metrics(run_dir: Path, metrics: dict[str, float]) -> None:
    """Add post-hoc numbers to a finished run's ``summary.json`` metrics (the one place a
    run's metrics are read from); a run without ``summary.json`` has not finished: nothing."""
    run = Run.load(run_dir)
    if not run.finished:
        return
    summary = dict(run.summary)
    summary["metrics"] = {**dict(summary.get("metrics") or {}), **metrics}
    records.write_json(run_dir / records.SUMMARY, summary)


def planes_line(summary: dict[str, float], trajectory: Path) -> str:
    """One line: the planes computed, and why a PCA plane is missing (and how to get one)."""
    done = ["interpolation from init", "random plane"]
    if "landscape/pca_explained_1" in summary:
        e1, e2 = summary["landscape/pca_explained_1"], summary.get("landscape/pca_explained_2", 0.0)
        done.append(f"PCA plane ({100 * e1:.0f}% + {100 * e2:.0f}% of the trajectory's variance)")
        return "computed: " + ", ".join(done)
    why = (
        f"its trajectory ({trajectory.name}) has fewer than 2 snapshots"
        if trajectory.is_file()
        else f"the run saved no trajectory ({records.DIAGNOSTICS}/{trajectory.name})"
    )
    return (
        f"computed: {', '.join(done)}; no PCA plane: {why}; train with "
        "diagnostics.landscape=true to save one (a snapshot every diagnostics.landscape.every steps)"
    )

"""Measurements that explain why an architecture trains as it does.

Each measurement is plain functions (usable in a notebook) plus a Lightning
callback, a :class:`bench.diagnostics.base.Diagnostic` (when it runs, what it
logs, what it writes). :func:`build_callbacks` turns ``RunConfig.diagnostics`` into the
callbacks of one run, each wrapped by :func:`bench.diagnostics.guard.guard` so
that a failing diagnostic is recorded and switched off instead of failing the
run; :func:`landscape_of` runs the loss-landscape analysis on a trained module
(at the end of a run, or later via ``bench landscape``).

The package itself imports no torch or Lightning (each callback's module is
imported when it is built), so that the pure-Python diagnoses
(:mod:`bench.diagnoses`: rules that read a run's records and say why
it trains badly) load in the report and in ``bench status``.

Every diagnostic that evaluates a loss measures the *training* loss, the one the
optimizer descends (cross-entropy with ``train.label_smoothing``):
``BenchModule.training_loss``. Each records which loss it measured (``loss`` in
its npz files).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import DiagnosticsConfig, RunConfig

if TYPE_CHECKING:
    from lightning.pytorch.callbacks import Callback

    from bench.diagnostics.guard import DiagnosticErrors


def _gradients(d: DiagnosticsConfig, run_dir: Path) -> Callback:
    from bench.diagnostics.gradients.callback import GradientDiagnostics

    return GradientDiagnostics(d, run_dir)


def _hessian(d: DiagnosticsConfig, run_dir: Path) -> Callback:
    from bench.diagnostics.hessian.callback import HessianCallback

    return HessianCallback(run_dir, d.hessian, figures=d.figures)


def _trajectory(d: DiagnosticsConfig, run_dir: Path) -> Callback:
    from bench.diagnostics.landscape import LandscapeCallback

    return LandscapeCallback(run_dir, every=d.landscape.every)


def _throughput(d: DiagnosticsConfig, run_dir: Path) -> Callback:
    from bench.diagnostics.throughput.callback import ThroughputDiagnostics

    return ThroughputDiagnostics(d)


def _attention_maps(d: DiagnosticsConfig, run_dir: Path) -> Callback:
    from bench.diagnostics.attention.maps import AttentionMapsCallback

    return AttentionMapsCallback(d, run_dir)


# name -> (is it on?, build it). Throughput comes last so it sees the others'
# excluded time.
CALLBACKS: dict[str, tuple[Callable[[DiagnosticsConfig], bool], Callable[..., Callback]]] = {
    "gradients": (lambda d: d.gradients or d.noise_scale or d.attention_entropy, _gradients),
    "hessian": (lambda d: d.hessian.enabled, _hessian),
    "landscape": (lambda d: d.landscape.enabled, _trajectory),
    "attention_maps": (lambda d: d.attention_maps, _attention_maps),
    "throughput": (lambda d: d.throughput, _throughput),
}


def build_callbacks(
    cfg: RunConfig, run_dir: Path, errors: DiagnosticErrors | None = None
) -> list[Callback]:
    """The diagnostics callbacks ``cfg.diagnostics`` switches on, in a fixed order.

    Each is guarded: its errors go to ``errors`` (a warning, then switched off).
    """
    from bench.diagnostics.guard import DiagnosticErrors, guard

    errors = errors if errors is not None else DiagnosticErrors()
    return [
        guard(make(cfg.diagnostics, run_dir), name, errors)
        for name, (on, make) in CALLBACKS.items()
        if on(cfg.diagnostics)
    ]


def landscape_of(
    module: Any,
    datamodule: Any,
    run_dir: Path,
    theta_init: Any,
    resolution: int | None = None,
    n_batches: int | None = None,
    seed: int = 0,
    figures: bool | None = None,
) -> dict[str, float]:
    """Landscape of a trained BenchModule into ``run_dir/diagnostics``.

    Uses the saved trajectory (PCA plane) when the run recorded one. ``figures``:
    draw the PNGs too (None: as the run's ``diagnostics.figures`` says).
    """
    from bench.diagnostics.landscape import landscape_report, load_trajectory
    from bench.diagnostics.loss import loss_name, training_loss
    from bench.diagnostics.parameters import flatten_params, trainable_params

    d = module.cfg.diagnostics
    config = d.landscape.model_copy(update={"resolution": resolution} if resolution else {})
    out = run_dir / "diagnostics"
    traj_path = out / "trajectory.npz"
    trajectory = load_trajectory(traj_path) if traj_path.is_file() else None
    loader = datamodule.val_dataloader()[0]
    batches = [b for _, b in zip(range(n_batches or config.batches), loader, strict=False)]
    return landscape_report(
        module,
        training_loss,
        batches,
        theta_init,
        flatten_params(trainable_params(module)),
        trajectory,
        out,
        config,
        seed=seed,
        loss_name=loss_name(module, training_loss),
        figures=d.figures if figures is None else figures,
    )

"""A run's diagnostics figures (PNG), drawn from its data files alone.

Every diagnostic writes what it measured as ``.npz`` into ``RUN_DIR/diagnostics/``;
its figures are drawn from those files only, by the drawers below, so that they
can be drawn at the end of the run (``diagnostics.figures: true``, the default) or
later (``bench figures RUN_DIR``; the quickstart sweep turns per-trial figures off:
on its tiny models the eleven figures of a run took as long as its training
steps). What a run measures, logs and writes as data is the same either way; the
report draws its own figures from the same ``.npz`` files.

Drawers: ``gradients.npz`` (gradient norm against depth, attention entropy),
``hessian_step{N}.npz`` (spectral density), ``landscape_interp.npz``,
``landscape_{random,pca}.npz`` (contour and surface), ``attention_maps.npz``
(every layer and head at init and at the end, example 0).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.io import save_figure


@dataclass(frozen=True)
class Drawn:
    """One figure of a data file: its file name, how to draw it, how to save it."""

    name: str
    draw: Callable[[], Any]  # -> a matplotlib Figure
    dpi: int = 120
    tight: bool = True


def _gradients(path: Path) -> Iterator[Drawn]:
    from bench.diagnostics.gradients.figures import plot_depth, plot_entropy

    arrays = dict(np.load(path))
    drawn = arrays["grad_norm_blocks"][[0, -1]] if len(arrays["steps"]) else np.zeros(0)
    if len(arrays["blocks"]) and (np.nan_to_num(drawn) > 0).any():  # log scale needs > 0
        yield Drawn("grad_norm_depth.png", lambda: plot_depth(arrays), dpi=100, tight=False)
    if len(arrays["entropy_steps"]):
        yield Drawn("attn_entropy.png", lambda: plot_entropy(arrays), dpi=100, tight=False)


def _hessian(path: Path) -> Iterator[Drawn]:
    from bench.diagnostics.hessian.figures import plot_density

    z = np.load(path)
    if not z["density"].size:  # measured with diagnostics.hessian.density off
        return
    step = int(z["step"])
    title = f"Hessian spectral density, step {step}"
    yield Drawn(path.with_suffix(".png").name, lambda: plot_density(z, title))


def _interpolation(path: Path) -> Iterator[Drawn]:
    from bench.diagnostics.landscape.figures import plot_interpolation

    z = np.load(path)
    yield Drawn("landscape_interp.png", lambda: plot_interpolation(z["alphas"], z["losses"]))


PLANE_TITLES: dict[str, Callable[[Any], str]] = {
    "random": lambda z: "Loss around the final weights (random plane)",
    "pca": lambda z: (
        f"PCA plane ({100 * z['explained'][0]:.0f}% + {100 * z['explained'][1]:.0f}% of variance)"
    ),
}


def _plane(path: Path) -> Iterator[Drawn]:
    from bench.diagnostics.landscape.figures import plot_contour, plot_surface

    z = np.load(path)
    name = path.stem.removeprefix("landscape_")
    title = PLANE_TITLES[name](z)
    xs, ys, losses = z["xs"], z["ys"], z["losses"]
    trajectory = z["path"] if "path" in z.files else None
    yield Drawn(f"{path.stem}_contour.png", lambda: plot_contour(xs, ys, losses, title, trajectory))
    yield Drawn(f"{path.stem}_surface.png", lambda: plot_surface(xs, ys, losses, title))


def _attention(path: Path) -> Iterator[Drawn]:
    from bench.diagnostics.attention.plot import AttentionMaps, draw_grid

    maps = AttentionMaps.load(path)
    last = len(maps.steps) - 1
    if maps.steps[0] == 0:  # no init maps: e.g. a run resumed without them
        yield Drawn("attention_init.png", lambda: draw_grid(maps, 0, 0), dpi=110, tight=False)
    yield Drawn("attention_end.png", lambda: draw_grid(maps, last, 0), dpi=110, tight=False)


# data file pattern -> its figures, in the order they are drawn
DRAWERS: dict[str, Callable[[Path], Iterator[Drawn]]] = {
    "gradients.npz": _gradients,
    "hessian_step*.npz": _hessian,
    "landscape_interp.npz": _interpolation,
    "landscape_random.npz": _plane,
    "landscape_pca.npz": _plane,
    "attention_maps.npz": _attention,
}


def draw_figures(path: Path, pattern: str, overwrite: bool = True) -> list[Path]:
    """The figures of one data file (drawn by ``DRAWERS[pattern]``) beside it; the paths.

    A data file that cannot be read is a ConfigError naming it.
    """
    from bench.config import ConfigError

    try:
        figures = list(DRAWERS[pattern](Path(path)))
    except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{path}: not readable as {pattern} ({type(e).__name__})") from None
    written = []
    for fig in figures:
        target = Path(path).with_name(fig.name)
        if overwrite or not target.is_file():
            written.append(save_figure(fig.draw(), target, dpi=fig.dpi, tight=fig.tight))
    return written


def draw_run_figures(diagnostics_dir: Path, overwrite: bool = False) -> list[Path]:
    """Every figure of the data files in a run's ``diagnostics/`` (missing ones only,
    unless ``overwrite``); the paths drawn."""
    written: list[Path] = []
    for pattern in DRAWERS:
        for path in sorted(Path(diagnostics_dir).glob(pattern)):
            written += draw_figures(path, pattern, overwrite)
    return written

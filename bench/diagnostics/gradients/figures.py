"""The gradient diagnostics' figures: norm against depth, attention entropy over training.

Both read the arrays of ``gradients.npz``
(:meth:`bench.diagnostics.gradients.callback.GradientDiagnostics.arrays`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from bench.io import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_depth(arrays: Mapping[str, np.ndarray]) -> Figure:
    """Gradient norm of each block (input to output) at init and at the last measured step."""
    blocks, norms, steps = arrays["blocks"], arrays["grad_norm_blocks"], arrays["steps"]
    fig = new_figure((6, 3.5))
    ax = fig.add_subplot()
    x = np.arange(len(blocks))
    rows = [(0, "init")] + ([(len(steps) - 1, "end")] if len(steps) > 1 else [])
    for i, label in rows:
        ax.plot(x, norms[i], marker="o", label=f"{label} (step {steps[i]})")
    ax.set_xticks(x, list(blocks), rotation=45, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("block (input -> output)")
    ax.set_ylabel("gradient L2 norm")
    ax.set_title("Gradient norm against depth")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_entropy(arrays: Mapping[str, np.ndarray]) -> Figure:
    """Attention entropy of each layer (mean over heads) against the step."""
    fig = new_figure((6, 3.5))
    ax = fig.add_subplot()
    mean = np.nanmean(arrays["attn_entropy"], axis=2)  # [E, NL]
    for j, name in enumerate(arrays["entropy_layers"]):
        ax.plot(arrays["entropy_steps"], mean[:, j], label=str(name))
    ax.set_xlabel("step")
    ax.set_ylabel("attention entropy (nats)")
    ax.set_title("Attention entropy per layer (mean over heads)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig

"""Attention maps as files and figures: ``attention_maps.npz`` and a grid of heatmaps.

Numpy and matplotlib only (no torch), so the report and ``bench attention`` draw
maps without loading a model. :mod:`bench.diagnostics.attention.maps` records
them during training.

``attention_maps.npz`` holds ``steps [N]`` (the recorded steps: at init and at
the end), ``layers [L]`` (``layer_0``, ``enc_layer_0``, ``dec_layer_0/cross``),
``maps_{j} [N, K, H, T, S]`` (float16 attention probabilities of layer ``j`` on
``K`` fixed validation examples), ``queries_{j} [K]`` / ``keys_{j} [K]`` (how
many query and key positions of each example are real, not padding) and
``query_tokens_{j} [K, T]`` / ``key_tokens_{j} [K, S]`` (the token ids along each
axis: the encoder's for encoder layers and cross-attention keys, else the decoder's).
A model with attention-sink positions (``model.sink_tokens = k``) records its decoder
layers' token queries only and its ``k`` sink keys first, with the token id
:data:`SINK_TOKEN`; the figures label them ``sink``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.io import save_figure

FILE = "attention_maps.npz"
MAX_TICK_LABELS = 24  # token ids along the axes only for maps this short
SINK_TOKEN = -1  # the token id recorded for an attention-sink key (no vocabulary id is < 0)


@dataclass(frozen=True)
class AttentionMaps:
    """One run's recorded maps (see the module docstring)."""

    steps: list[int]
    layers: list[str]
    maps: list[np.ndarray]  # per layer [N, K, H, T, S]
    queries: list[np.ndarray]  # per layer [K]
    keys: list[np.ndarray]  # per layer [K]
    query_tokens: list[np.ndarray]  # per layer [K, T]
    key_tokens: list[np.ndarray]  # per layer [K, S]

    @property
    def examples(self) -> int:
        return int(self.maps[0].shape[1]) if self.maps else 0

    @classmethod
    def load(cls, path: Path) -> AttentionMaps:
        with np.load(path) as z:
            layers = [str(x) for x in z["layers"]]
            idx = range(len(layers))
            return cls(
                [int(s) for s in z["steps"]],
                layers,
                [z[f"maps_{j}"] for j in idx],
                [z[f"queries_{j}"] for j in idx],
                [z[f"keys_{j}"] for j in idx],
                [
                    z[f"query_tokens_{j}"] if f"query_tokens_{j}" in z else z["tokens"]
                    for j in idx  # first files held the decoder's tokens only
                ],
                [z[f"key_tokens_{j}"] for j in idx],
            )

    def arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {
            "steps": np.array(self.steps, dtype=np.int64),
            "layers": np.array(self.layers, dtype=str),
        }
        for j in range(len(self.layers)):
            out[f"maps_{j}"] = self.maps[j].astype(np.float16)
            out[f"queries_{j}"] = self.queries[j]
            out[f"keys_{j}"] = self.keys[j]
            out[f"query_tokens_{j}"] = self.query_tokens[j]
            out[f"key_tokens_{j}"] = self.key_tokens[j]
        return out

    def at(self, step_index: int, example: int) -> list[tuple[str, np.ndarray]]:
        """``(layer, [H, q, k])`` maps of one recorded step and example, padding cropped."""
        out = []
        for j, layer in enumerate(self.layers):
            q, k = int(self.queries[j][example]), int(self.keys[j][example])
            out.append((layer, self.maps[j][step_index, example, :, :q, :k].astype(np.float32)))
        return out


Panel = tuple[str, str, np.ndarray, np.ndarray, np.ndarray]  # row, layer, [H, q, k], tokens


def panels(maps: AttentionMaps, step_index: int, example: int, row: str = "") -> list[Panel]:
    """One row of heatmaps per layer: ``(row label, layer, [H, q, k], query and key tokens)``."""
    out = []
    for j, (layer, m) in enumerate(maps.at(step_index, example)):
        out.append(
            (
                row,
                layer,
                m,
                maps.query_tokens[j][example, : m.shape[1]],
                maps.key_tokens[j][example, : m.shape[2]],
            )
        )
    return out


def draw_panels(rows: list[Panel], title: str) -> Any:
    """A figure: one row per panel, one column per head, each an attention heatmap
    (rows: query positions, columns: key positions, colour: probability 0..1). A figure
    with a negative weight (differential attention's ``A1 - λ A2``) is drawn on a
    signed scale, -1..1 with 0 white, so negative weights are not clipped to 0."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_cols = max(m.shape[0] for _, _, m, _, _ in rows)
    signed = any(m.size and float(m.min()) < 0 for _, _, m, _, _ in rows)
    vmin, cmap, label = (
        (-1.0, "RdBu_r", "weight (signed)") if signed else (0.0, "magma", "probability")
    )
    fig = Figure(figsize=(1.9 * n_cols + 1.0, 1.9 * len(rows) + 0.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    image = None
    for r, (row, layer, m, queries, keys) in enumerate(rows):
        if row:
            axes[r, 0].set_ylabel(row, fontsize=7)
        for h in range(n_cols):
            ax = axes[r, h]
            if h >= m.shape[0]:
                ax.axis("off")
                continue
            image = ax.imshow(m[h], vmin=vmin, vmax=1.0, cmap=cmap, interpolation="nearest")
            _ticks(ax, queries, keys)
            ax.set_title(f"{layer} head {h}", fontsize=7)
    fig.suptitle(title, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label=label)
    return fig


def draw_grid(maps: AttentionMaps, step_index: int, example: int, title: str = "") -> Any:
    """Every layer (rows) and head (columns) of one recorded step and example."""
    step = maps.steps[step_index]
    title = title or f"attention at step {step}, example {example} (rows: queries, columns: keys)"
    return draw_panels(panels(maps, step_index, example), title)


def token_label(token: int) -> str:
    """A tick label: the token id, or ``sink`` for an attention-sink position."""
    return "sink" if token == SINK_TOKEN else str(token)


def _ticks(ax: Any, queries: np.ndarray, keys: np.ndarray) -> None:
    if len(queries) <= MAX_TICK_LABELS and len(keys) <= MAX_TICK_LABELS:
        ax.set_xticks(
            range(len(keys)), [token_label(int(t)) for t in keys], fontsize=4, rotation=90
        )
        ax.set_yticks(range(len(queries)), [token_label(int(t)) for t in queries], fontsize=4)
    else:  # too long for every id: only the sinks are named
        sinks = [i for i, t in enumerate(keys) if int(t) == SINK_TOKEN]
        ax.set_xticks(sinks, ["sink"] * len(sinks), fontsize=4, rotation=90)
        ax.set_yticks([])


def save_grid(maps: AttentionMaps, step_index: int, example: int, path: Path, **kw: Any) -> Path:
    """Draw :func:`draw_grid` into ``path`` (PNG)."""
    save_figure(draw_grid(maps, step_index, example, **kw), path, dpi=110, tight=False)
    return path


def step_index(maps: AttentionMaps, step: int | None) -> int:
    """The index of a recorded step (None: the last); ValueError names the recorded ones."""
    if step is None:
        return len(maps.steps) - 1
    if step not in maps.steps:
        recorded = ", ".join(str(s) for s in maps.steps)
        raise ValueError(f"--step {step}: no maps recorded at that step; recorded: {recorded}")
    return maps.steps.index(step)


def draw_attention(
    run_dir: Path, step: int | None = None, example: int = 0, out: str | Path | None = None
) -> Path:
    """``bench attention``: draw one recorded step and example of a run; returns the PNG.

    Bad input (not a run directory, no maps, a step or example not recorded, an
    output that is not a .png) is a ConfigError naming what is allowed, before
    anything is written.
    """
    from bench.config import ConfigError

    path = Path(run_dir) / "diagnostics" / FILE
    if not Path(run_dir).is_dir() or not (Path(run_dir) / "config.yaml").is_file():
        raise ConfigError(f"{run_dir}: not a run directory (no config.yaml)")
    if not path.is_file():
        raise ConfigError(
            f"{run_dir}: no attention maps recorded (diagnostics/{FILE}); "
            "train with diagnostics.attention_maps=true"
        )
    try:
        maps = AttentionMaps.load(path)
    except Exception as e:
        raise ConfigError(f"{path}: not readable as attention maps ({type(e).__name__})") from None
    try:
        index = step_index(maps, step)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if not 0 <= example < maps.examples:
        raise ConfigError(
            f"--example {example}: {maps.examples} examples recorded; allowed: 0..{maps.examples - 1}"
        )
    target = (
        Path(out) if out else path.parent / f"attention_step{maps.steps[index]}_ex{example}.png"
    )
    if target.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: the figure is a PNG; give a path ending in .png")
    if not target.parent.is_dir():
        raise ConfigError(f"--out {out}: the directory {target.parent} does not exist")
    return save_grid(maps, index, example, target)

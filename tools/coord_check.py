"""The coordinate check of Tensor Programs V for bench's decoder: SP against µP.

Trains a few steps of Adam at a large learning rate at each width (4 layers, heads fixed,
``train.mup_base_width`` the smallest width) under each parameterization, records the
mean |x| of each activation (:mod:`bench.training.coord_check`: the embedding output, each
block's output, each layer's attention logits, the readout logits) per step and width,
prints each activation's growth from the smallest to the largest width after the last
step, and draws ``docs/figures/coord_check.png``: one panel a parameterization, activation
size against width on log axes, one line per activation and step (lighter: earlier)::

    flock /tmp/bench-measure.lock nice -n 5 python tools/coord_check.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.config import build_run_config
from bench.io import new_figure, save_figure
from bench.training.coord_check import CoordData, coord_check

FIGURE = Path(__file__).resolve().parents[1] / "docs" / "figures" / "coord_check.png"
SHOWN = ("embed", "block{last}", "attn_logits{last}", "logits")  # one colour each


def measure(parameterization: str, args: argparse.Namespace) -> CoordData:
    cfg = build_run_config(
        overrides={
            "train.parameterization": parameterization,
            "train.mup_base_width": args.widths[0],
            "train.lr": args.lr,
            "train.warmup_steps": 0,
            "train.schedule": "constant",
            "train.weight_decay": 0.0,
            "train.grad_clip": None,
            "model.n_layers": args.layers,
            "model.n_heads": 4,
            "task.name": "text",
            "task.seq_len": 64,
            "task.batch_size": 16,
            "task.max_bytes": 200_000,
        }
    )
    return coord_check(cfg, args.widths, args.steps, seeds=range(args.seeds))


def draw(results: dict[str, CoordData], layers: int, path: Path) -> None:
    fig = new_figure((11.0, 4.4))
    axes = fig.subplots(1, len(results), sharey=True)
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    last = layers - 1
    for ax, (parameterization, data) in zip(axes, results.items(), strict=True):
        steps = len(next(iter(data.sizes["logits"].values())))
        for colour, name in zip(colours, SHOWN, strict=True):
            key = name.format(last=last)
            for step in range(steps):
                sizes = [data.sizes[key][w][step] for w in data.widths]
                if not all(s > 0 for s in sizes):  # a zero-initialized output at step 0
                    continue
                alpha = 0.25 + 0.75 * step / max(1, steps - 1)
                label = key if step == steps - 1 else None
                ax.plot(
                    data.widths, sizes, color=colour, alpha=alpha, marker="o", ms=3, label=label
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(list(data.widths), [str(w) for w in data.widths])
        ax.set_xlabel("width (d_model)")
        name = "µP" if parameterization == "mup" else "standard (SP)"
        ax.set_title(f"{name}: steps 0-{steps - 1} (lighter = earlier)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("mean |activation|")
    axes[-1].legend(loc="best", fontsize=8)
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=FIGURE)
    args = ap.parse_args()
    results = {p: measure(p, args) for p in ("standard", "mup")}
    ratios = {p: d.ratios() for p, d in results.items()}
    print(
        f"size at width {args.widths[-1]} / size at width {args.widths[0]}, after step {args.steps}"
    )
    print(f"{'activation':<16} {'SP':>8} {'µP':>8}")
    for name in ratios["standard"]:
        print(f"{name:<16} {ratios['standard'][name]:8.2f} {ratios['mup'][name]:8.2f}")
    draw(results, args.layers, args.out)
    print(f"figure: {args.out}")


if __name__ == "__main__":
    main()

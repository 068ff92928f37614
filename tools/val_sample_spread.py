"""How much a text claim's validation loss moves with the validation sample alone.

With ``seed_data`` every replicate of a claim draws its own validation windows
(``task.seed``), so the run-to-run spread of ``val/loss`` includes the spread of the
mean loss over those windows. This measures that spread without training: the
unigram model's mean loss (nats per byte, training byte frequencies, add-one
smoothed) over ``n`` random windows of the validation stream, for several ``n``,
over many draws. Used to size ``task.n_val`` of the text claims
(``sweeps/claims/*.yaml``)::

    python tools/val_sample_spread.py --seq-len 32 --n 64 512 1024
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.config import RunConfig
from bench.tasks.text import TextTask, split_documents


def spread(seq_len: int, n: int, draws: int, max_bytes: int) -> tuple[int, float]:
    """(validation bytes, sd over ``draws`` of the mean unigram loss over ``n`` windows)."""
    task = {"name": "text", "seq_len": seq_len, "eval_scales": [1], "max_bytes": max_bytes}
    cfg = RunConfig.model_validate({"task": task})
    dm = TextTask(cfg.task, cfg.model.arch)
    train, val, _, _ = split_documents(dm.documents())
    train_b, val_b = np.asarray(train), np.asarray(val)
    freq = np.bincount(train_b, minlength=256) + 1.0
    nll = -np.log(freq / freq.sum())[val_b]
    width = seq_len + 1
    window_means = np.convolve(nll, np.ones(width) / width, mode="valid")
    means = [
        window_means[np.random.default_rng(s).integers(0, len(val_b) - width, n)].mean()
        for s in range(draws)
    ]
    return len(val_b), float(np.std(means, ddof=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--n", type=int, nargs="+", default=[64, 512, 1024])
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--max-bytes", type=int, default=400_000)
    args = ap.parse_args()
    for n in args.n:
        size, sd = spread(args.seq_len, n, args.draws, args.max_bytes)
        print(f"seq_len {args.seq_len}, {n} windows of {size} validation bytes: sd {sd:.4f} nats")


if __name__ == "__main__":
    main()

"""bench's µP against Microsoft's ``mup`` package itself (not a dependency of bench).

On bench's own architecture at widths 64, 128 and 256 (base 32): ``mup.set_base_shapes``
(base at 32, delta at 64; the readout swapped for ``mup.MuReadout``, which mup requires)
then ``mup.MuAdamW`` over bench's weight-decay groups gives every parameter's Adam LR and
weight decay, which must equal bench's µP groups exactly; and ``mup.init.xavier_uniform_``
on each hidden FFN and attention-output shape gives a std that bench's µP init must match
up to sampling. ``mup`` needs only torch and PyYAML at import: point ``--mup-src`` at a
checkout's top directory (the one holding ``mup/``), or ``pip install --no-deps mup``::

    python tools/mup_package_check.py --mup-src /path/to/microsoft/mup
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import torch

from bench.config import ModelConfig, TrainConfig
from bench.model import build_model
from bench.training.optimizer import build_optimizer

BASE, LR, WD = 32, 1e-2, 0.1


def check(width: int, mup: Any) -> tuple[int, int, float]:
    """(parameters, parameters whose LR or decay differs from MuAdamW's, worst init std gap)."""
    cfg = ModelConfig(d_model=width, n_layers=2, vocab_size=64, tie_embeddings=False)
    torch.manual_seed(0)
    ours = build_model(cfg, "mup", BASE)
    opt, _ = build_optimizer(ours, TrainConfig(lr=LR, weight_decay=WD, parameterization="mup"))
    got = {
        id(p): (g["initial_lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]
    }
    widths = (width, BASE, 2 * BASE)
    models = [build_model(cfg.model_copy(update={"d_model": d})) for d in widths]
    for m, d in zip(models, widths, strict=True):  # mup refuses a plain Linear readout
        m.lm_head = mup.MuReadout(d, cfg.vocab_size, bias=False)
    sp, base, delta = models
    mup.set_base_shapes(sp, base, delta=delta, rescale_params=False)
    sp_opt, _ = build_optimizer(sp, TrainConfig(lr=LR, weight_decay=WD))
    decay = {id(p): g["weight_decay"] for g in sp_opt.param_groups for p in g["params"]}
    groups = [
        {"params": [p for p in sp.parameters() if decay[id(p)] == wd], "weight_decay": wd}
        for wd in (WD, 0.0)
    ]
    theirs = mup.MuAdamW(groups, lr=LR)
    ref = {id(p): (g["lr"], g["weight_decay"]) for g in theirs.param_groups for p in g["params"]}
    differ, worst = 0, 0.0
    pairs = list(zip(ours.named_parameters(), sp.parameters(), strict=True))
    for (name, p), q in pairs:
        a, b = got[id(p)], ref[id(q)]
        if not all(math.isclose(x, y, rel_tol=1e-12) for x, y in zip(a, b, strict=True)):
            differ += 1
            print(f"  {name}: bench lr, wd {a}; MuAdamW {b}")
        if p.ndim == 2 and ("ffn" in name or "attn.out" in name):
            t = torch.empty_like(q)
            t.infshape = q.infshape  # type: ignore[attr-defined]
            mup.init.xavier_uniform_(t)
            worst = max(worst, abs(p.std().item() / t.std().item() - 1))
    return len(pairs), differ, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mup-src", help="a checkout of github.com/microsoft/mup (else: installed)")
    args = ap.parse_args()
    if args.mup_src:
        sys.path.insert(0, args.mup_src)
    import mup

    for width in (64, 128, 256):
        n, differ, worst = check(width, mup)
        print(
            f"width {width}: {differ} of {n} parameters differ from MuAdamW in LR or weight "
            f"decay; hidden init std vs mup.init.xavier_uniform_: max relative gap {worst:.3f}"
        )


if __name__ == "__main__":
    main()

"""Gradient norms per group, the first/last block ratio and update/weight ratios.

Groups come from :mod:`bench.diagnostics.grouping`. Norms are L2; a group's norm
is the root of the sum of its parameters' squared norms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from lightning.pytorch.utilities import grad_norm
from torch import Tensor, nn

from bench.diagnostics.grouping import Layout


def _group_norms(layout: Layout, per_param_sq: Sequence[float | None]) -> dict[str, float]:
    """Aggregate squared per-parameter norms into group, sublayer and total norms."""
    sums: dict[str, float] = {}
    for group, sub, sq in zip(layout.groups, layout.sublayers, per_param_sq, strict=True):
        if sq is None:
            continue
        sums[group] = sums.get(group, 0.0) + sq
        if sub is not None:
            key = f"{group}/{sub}"
            sums[key] = sums.get(key, 0.0) + sq
        sums["total"] = sums.get("total", 0.0) + sq
    return {k: math.sqrt(v) for k, v in sums.items()}


def grad_norms(model: nn.Module, layout: Layout | None = None) -> dict[str, float]:
    """L2 gradient norms per group (``block_0``), sublayer (``block_0/attn``) and ``total``.

    Per-parameter norms come from Lightning's ``grad_norm``; parameters without a
    gradient are left out.
    """
    layout = layout or Layout.of(model)
    per_param = grad_norm(model, 2.0)
    values = [per_param.get(f"grad_2.0_norm/{n}") for n in layout.names]
    present = [v for v in values if v is not None]
    # grad_norm is typed as returning floats; its values are 0-d tensors (one host sync here).
    tensors = [torch.as_tensor(v) for v in present]
    floats = iter(torch.stack(tensors).float().tolist()) if present else iter(())
    return _group_norms(layout, [next(floats) ** 2 if v is not None else None for v in values])


def param_grad_norms(params: Mapping[str, Tensor]) -> dict[str, float]:
    """Frobenius norm of each named parameter's gradient (those without one left out).

    Of the loss the gradient came from: for a mean over the batch (the training
    loss), the norm of the batch-mean gradient, not the mean of per-example norms.
    """
    named = [(k, p.grad) for k, p in params.items() if p.grad is not None]
    if not named:
        return {}
    norms = torch.stack([g.detach().float().norm() for _, g in named]).tolist()
    return dict(zip((k for k, _ in named), norms, strict=True))


def total_grad_norm(params: Sequence[nn.Parameter]) -> float:
    """Global L2 norm of the gradients of ``params`` (what clip_grad_norm_ sees)."""
    grads = [p.grad.detach().float() for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


def first_last_ratio(norms: Mapping[str, float], blocks: Sequence[str]) -> float:
    """Gradient norm of the first block over the last (``nan`` if undefined)."""
    if len(blocks) < 1 or blocks[0] not in norms or blocks[-1] not in norms:
        return math.nan
    last = norms[blocks[-1]]
    return norms[blocks[0]] / last if last > 0 else math.nan


def snapshot(layout: Layout) -> list[Tensor]:
    """Copies of every parameter, taken before an optimizer step."""
    return [p.detach().clone() for p in layout.params]


def update_ratios(layout: Layout, before: Sequence[Tensor]) -> dict[str, float]:
    """``||θ_now - θ_before|| / ||θ_before||`` per group and ``total``."""
    diffs = torch.stack(
        [(p.detach() - b).float().norm() for p, b in zip(layout.params, before, strict=True)]
    )
    sizes = torch.stack([b.float().norm() for b in before])
    d2, w2 = (diffs**2).tolist(), (sizes**2).tolist()
    out_d: dict[str, float] = {}
    out_w: dict[str, float] = {}
    for group, dd, ww in zip(layout.groups, d2, w2, strict=True):
        for key in (group, "total"):
            out_d[key] = out_d.get(key, 0.0) + dd
            out_w[key] = out_w.get(key, 0.0) + ww
    return {k: math.sqrt(out_d[k] / out_w[k]) if out_w[k] > 0 else math.nan for k in out_d}


def squared_grad_norm(loss: Tensor, params: Sequence[nn.Parameter]) -> float:
    """``|∇loss|²`` over ``params`` without touching ``p.grad``."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    sq = [g.detach().float().pow(2).sum() for g in grads if g is not None]
    return float(torch.stack(sq).sum()) if sq else 0.0

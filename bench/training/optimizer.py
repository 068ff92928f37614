"""AdamW's parameter groups and the learning-rate schedule; no Lightning.

:func:`param_groups` splits the model's parameters by weight decay and, under µP, by
width: a matrix-like parameter (:class:`~bench.model.parameterization.Width`) gets the
learning rate ``lr / m`` and the weight decay ``weight_decay * m``, ``m`` its fan-in's
width multiplier against the base model (Yang et al. 2022, Tensor Programs V, Table 3
for Adam; mup's ``MuAdamW`` with ``decoupled_wd=False``, so that AdamW's per-step
shrink ``lr * wd`` is the same at every width). :func:`lr_lambda` is a multiplier that
``LambdaLR`` applies to each group's own initial learning rate, so the schedule keeps
the per-group multipliers (a scheduler that set absolute learning rates would undo µP).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bench.config import TrainConfig
from bench.model.norms import NORMS
from bench.model.parameterization import Width


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    """Multiplier on the peak LR: linear warmup, then cosine/linear decay to min_lr_ratio."""

    def f(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant":
            return 1.0
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        t = min(1.0, (step - cfg.warmup_steps) / span)
        decay = 0.5 * (1 + math.cos(math.pi * t)) if cfg.schedule == "cosine" else 1 - t
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * decay

    return f


def widths_of(model: nn.Module) -> dict[int, Width]:
    """The model's parameterization's ``id(parameter) -> Width`` (empty for standard)."""
    parameterization = getattr(model, "parameterization", None)
    return parameterization.widths(model) if parameterization is not None else {}


def lr_width_multiplier(width: Width | None) -> float:
    """Table 3 (Adam): a hidden (matrix-like) weight's LR is divided by this; every other
    parameter's (embeddings, biases, norm gains, readout) is not (1)."""
    return width.fan_in if width is not None and width.matrix_like else 1.0


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on norms, biases and embeddings unless asked; under µP
    one more group per width multiplier ``m`` of the matrix-like weights, with ``lr / m``
    and ``weight_decay * m``. The first group always has the base ``lr`` (it is logged)."""
    no_decay_types: tuple[type[nn.Module], ...] = (nn.Embedding, *NORMS.values())
    widths = widths_of(model)
    decay: dict[float, list[nn.Parameter]] = {1.0: []}
    no_decay: dict[float, list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))  # tied weights appear twice; the first owner decides
            exempt = isinstance(module, no_decay_types) or p.ndim < 2 or name == "bias"
            by_mult = no_decay if exempt and not cfg.decay_norms_and_embeddings else decay
            by_mult.setdefault(lr_width_multiplier(widths.get(id(p))), []).append(p)
    groups: list[dict[str, Any]] = []
    for params, weight_decay in ((decay, cfg.weight_decay), (no_decay, 0.0)):
        for mult, ps in params.items():
            group: dict[str, Any] = {"params": ps, "weight_decay": weight_decay * mult}
            if mult != 1.0:
                group["lr"] = cfg.lr / mult
            groups.append(group)
    return groups


def build_optimizer(
    model: nn.Module, cfg: TrainConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over :func:`param_groups` and its ``LambdaLR`` schedule (:func:`lr_lambda`)."""
    opt = torch.optim.AdamW(
        param_groups(model, cfg), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=False
    )
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))

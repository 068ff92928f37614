"""Weight initialisation schemes: torch (defaults), gpt2, deepnorm.

Schemes find the projections through ``weight_blocks()`` of attention and
feed-forward modules (role names q, k, v, out, in), so they never depend on
parameter names. Every scheme receives the model and reads each stack's depth
(``n_layers``) and deepnorm ``beta`` from the stack itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

GPT2_STD = 0.02


def _blocks(model: nn.Module) -> Iterator[tuple[nn.Module, int, float]]:
    """``(sublayer, stack depth, stack beta)`` for every attention/FFN of every block."""
    for stack in model.modules():
        if hasattr(stack, "blocks") and hasattr(stack, "n_layers"):
            for block in stack.blocks:
                for sub in (block.attn, block.cross_attn, block.ffn):
                    if sub is not None:
                        yield sub, stack.n_layers, stack.beta


def init_torch(model: nn.Module) -> None:
    """Keep PyTorch's default initialisation (kaiming-uniform linears, N(0, 1) embeddings)."""


def _normal_all(model: nn.Module, std: float) -> None:
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


@torch.no_grad()
def init_gpt2(model: nn.Module) -> None:
    """Radford et al. 2019: N(0, 0.02) weights, zero biases, and residual output
    projections (attention ``out``, FFN ``fc_out``) scaled by ``1/sqrt(2 * n_layers)``."""
    _normal_all(model, GPT2_STD)
    for sub, n_layers, _ in _blocks(model):
        for role, linear, rows in sub.weight_blocks():
            if role == "out":
                nn.init.normal_(linear.weight[rows], 0.0, GPT2_STD / math.sqrt(2 * n_layers))


@torch.no_grad()
def init_deepnorm(model: nn.Module) -> None:
    """Wang et al. 2022: xavier-normal block projections, gain ``beta`` for the FFN,
    the value and the attention output projections, gain 1 for queries and keys.
    Embeddings and the LM head get N(0, 0.02) as in gpt2, so schemes differ only
    where the paper says."""
    _normal_all(model, GPT2_STD)
    for sub, _, beta in _blocks(model):
        for role, linear, rows in sub.weight_blocks():
            nn.init.xavier_normal_(linear.weight[rows], gain=1.0 if role in ("q", "k") else beta)


INITS: dict[str, Callable[[nn.Module], None]] = {
    "torch": init_torch,
    "gpt2": init_gpt2,
    "deepnorm": init_deepnorm,
}

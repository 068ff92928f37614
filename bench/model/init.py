"""Weight initialisation schemes: torch (defaults), gpt2, xavier, deepnorm.

Schemes find the projections through ``weight_blocks()`` of attention and
feed-forward modules (role names q, k, v, out, in), so they never depend on
parameter names. Every scheme receives the model and reads each stack's depth
(``n_layers``) and deepnorm ``beta`` from the stack itself, and ``d_model`` from
``model.cfg``. The embedding standard deviations come from
:func:`bench.config.embedding_std`, which the pure-Python config also uses to
judge an init/embedding-scale combination (``ModelConfig.init_warning``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from bench.config import GPT2_STD, embedding_std


def _blocks(model: nn.Module) -> Iterator[tuple[nn.Module, int, float]]:
    """``(sublayer, stack depth, stack beta)`` for every attention/FFN of every block."""
    for stack in model.modules():
        if hasattr(stack, "blocks") and hasattr(stack, "n_layers"):
            for block in stack.blocks:
                for sub in (block.attn, block.cross_attn, block.ffn):
                    if sub is not None:
                        yield sub, stack.n_layers, stack.beta


def _embedding_std(model: nn.Module, scheme: str) -> float:
    return embedding_std(scheme, model.cfg.d_model)


def init_torch(model: nn.Module) -> None:
    """Keep PyTorch's default initialisation (kaiming-uniform linears, N(0, 1) embeddings)."""


def _normal_all(model: nn.Module, std: float) -> None:
    """Every linear and embedding (token, learned positions, t5 bias table) N(0, std); zero biases."""
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
def init_xavier(model: nn.Module) -> None:
    """Vaswani et al. 2017 as tensor2tensor and fairseq implement it (the paper names no
    init; Xiong et al. 2020 analyse post-LN under it): xavier-uniform (Glorot & Bengio
    2010) for each projection (q, k, v, out, FFN matrices, each with its own fans), zero
    biases, and N(0, d_model^-1/2) embeddings and untied head, so that the ``sqrt_d``
    embedding scale gives unit RMS."""
    _normal_all(model, _embedding_std(model, "xavier"))
    for sub, _, _ in _blocks(model):
        for _, linear, rows in sub.weight_blocks():
            nn.init.xavier_uniform_(linear.weight[rows])


@torch.no_grad()
def init_deepnorm(model: nn.Module) -> None:
    """Wang et al. 2022: xavier-normal block projections, gain ``beta`` for the FFN,
    the value and the attention output projections, gain 1 for queries and keys.
    Embeddings and the untied head get N(0, d_model^-1/2) as in fairseq, on which
    the paper's translation experiments run (unit RMS with the ``sqrt_d`` scale)."""
    _normal_all(model, _embedding_std(model, "deepnorm"))
    for sub, _, beta in _blocks(model):
        for role, linear, rows in sub.weight_blocks():
            nn.init.xavier_normal_(linear.weight[rows], gain=1.0 if role in ("q", "k") else beta)


INITS: dict[str, Callable[[nn.Module], None]] = {
    "torch": init_torch,
    "gpt2": init_gpt2,
    "xavier": init_xavier,
    "deepnorm": init_deepnorm,
}

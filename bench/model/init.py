"""Weight initialisation schemes: torch (defaults), gpt2, xavier, deepnorm.

Schemes find the projections through ``weight_blocks()`` of attention and
feed-forward modules (role names q, k, v, out, in), which they reach by asking
the model for its stacks (:mod:`bench.model.weights`), so they never depend on
parameter names. Every scheme receives the model and reads each stack's depth
(``n_layers``) from the stack itself, and ``d_model`` from ``model.cfg``. The
embedding standard deviations come from :func:`bench.config.embedding_std`,
which the pure-Python config also uses to judge an init/embedding-scale
combination (``ModelConfig.init_warning``). The deepnorm scheme lives with the
rest of DeepNorm in :mod:`bench.model.deepnorm`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from bench.config import GPT2_STD, embedding_std
from bench.model.deepnorm import init_deepnorm
from bench.model.weights import Stacked, normal_all, sublayers


def init_torch(model: Stacked) -> None:
    """Keep PyTorch's default initialisation (kaiming-uniform linears, N(0, 1) embeddings)."""


@torch.no_grad()
def init_gpt2(model: Stacked) -> None:
    """Radford et al. 2019: N(0, 0.02) weights, zero biases, and residual output
    projections (attention ``out``, FFN ``fc_out``) scaled by ``1/sqrt(2 * n_layers)``."""
    normal_all(model, GPT2_STD)
    for sub, stack in sublayers(model):
        for role, linear, rows in sub.weight_blocks():
            if role == "out":
                nn.init.normal_(linear.weight[rows], 0.0, GPT2_STD / math.sqrt(2 * stack.n_layers))


@torch.no_grad()
def init_xavier(model: Stacked) -> None:
    """Vaswani et al. 2017 as tensor2tensor and fairseq implement it (the paper names no
    init; Xiong et al. 2020 analyse post-LN under it): xavier-uniform (Glorot & Bengio
    2010) for each projection (q, k, v, out, FFN matrices, each with its own fans), zero
    biases, and N(0, d_model^-1/2) embeddings and untied head, so that the ``sqrt_d``
    embedding scale gives unit RMS."""
    normal_all(model, embedding_std("xavier", model.cfg.d_model))
    for sub, _ in sublayers(model):
        for _, linear, rows in sub.weight_blocks():
            nn.init.xavier_uniform_(linear.weight[rows])


INITS: dict[str, Callable[[Stacked], None]] = {
    "torch": init_torch,
    "gpt2": init_gpt2,
    "xavier": init_xavier,
    "deepnorm": init_deepnorm,
}

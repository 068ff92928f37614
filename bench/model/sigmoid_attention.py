"""Sigmoid attention: ``σ(q.k / sqrt(d) + b)`` in place of softmax, with ``b = -ln n``.

Ramapuram et al. 2025, "Theory, Analysis, and Best Practices for Sigmoid
Self-Attention" (ICLR 2025, arXiv 2409.04431): each weight is an independent
sigmoid of its score, with no normalization over the keys, and the bias
``b = -log n`` keeps the row sums near 1 at init (Sec. 3.2; the authors' code,
apple/ml-sigmoid-attention, sets ``sigmoid_bias`` to ``-ln 2048`` for their
2048-token language models, i.e. ``n`` is the training sequence length).

``model.sigmoid_bias`` sets ``b``; left empty it is ``-ln S`` with ``S`` the
key length of the call (the training sequence length during training, as in the
paper; at an evaluation length other than the training one it follows that
length, where the paper's constant would not: set ``sigmoid_bias`` to keep the
training value). Causality, padding, a sliding window and positional biases come
in the same additive mask as for softmax: a hidden key has score ``-inf`` and
weight ``σ(-inf) = 0``. The paper stabilizes large initial attention norms with
QK-norm (their language models run with ``qk_norm`` on; here ``model.qk_norm``).

No SDPA kernel computes a sigmoid (FlashSigmoid is the authors' own CUDA kernel),
so the scores and weighted sum are two explicit matmuls on every device; they cost
the FLOPs SDPA's would. The map is recorded as computed; its rows do not sum to
1, so attention entropy is not defined for it (the diagnostics leave it out).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from bench.config import ModelConfig
from bench.model.attention import Attention


class SigmoidAttention(Attention):
    """``σ(q.k x scale + b + mask) V`` per head (see the module docstring)."""

    kind = "sigmoid"
    map_is_distribution = False
    uses_sdpa = False

    def __init__(
        self, cfg: ModelConfig, cross: bool = False, scale: float | None = None, layer: int = 0
    ) -> None:
        super().__init__(cfg, cross, scale, layer)
        self.bias = cfg.sigmoid_bias  # None: -ln (keys of the call)

    def attention_map(self, q: Tensor, k: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        scores = self.scores(q, k, mask, is_causal)
        b = -math.log(scores.shape[-1]) if self.bias is None else self.bias
        return (scores + b).sigmoid()

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool
    ) -> Tensor:
        w = self.attention_map(q, k, mask, is_causal)
        w = F.dropout(w, self.dropout, self.training)
        return w @ v.repeat_interleave(self.n_heads // self.n_kv, dim=1)

"""Differential attention: the difference of two softmax maps, with a learned λ.

Ye et al. 2025, "Differential Transformer" (ICLR 2025, arXiv 2410.05258), Eq. 1-3
and the authors' code (microsoft/unilm, ``Diff-Transformer/multihead_diffattn.py``):

    DiffAttn(X) = (softmax(Q1 K1ᵀ / √d) − λ softmax(Q2 K2ᵀ / √d)) V
    λ = exp(λq1 · λk1) − exp(λq2 · λk2) + λ_init,   λ_init = 0.8 − 0.6 exp(−0.3 (l − 1))
    head = (1 − λ_init) · RMSNorm(DiffAttn)  (over the head's 2d channels, with a gain)

with ``l = 1..L`` the layer in the paper, i.e. ``0.8 − 0.6 exp(−0.3 depth)`` with
the 0-based ``depth`` of the authors' code (λ_init = 0.2 in the first layer, not
0.356). λq1, λk1, λq2, λk2 ∈ R^d are drawn from N(0, 0.1) and shared by the
layer's heads; λ_init is a constant.

Heads halve as in the paper: with ``n_heads = H`` and ``head_dim = d``, the
layer has ``H/2`` differential heads, each with two queries and two keys of width
``d`` (adjacent query/key heads ``2i, 2i+1``, as in the authors' code) and one value
of width ``2d``. The projections are therefore exactly softmax attention's
(``d_model -> H d`` queries, ``KV d`` keys and values), so parameters match a
softmax model of the same config but for λ and the norm gains; ``n_heads`` and
``n_kv_heads`` must be even. Under GQA, query head ``j`` reads key head
``j // (H/KV)`` and differential head ``i`` value head ``i // (H/KV)``, the
authors' ``repeat_kv``.

One SDPA call computes both maps' weighted values: the queries and keys as they
are and each value repeated for the two heads of its pair (value width ``2d``),
``[A1 V | A2 V]``. PyTorch's flash kernels need equal query and value widths, so
the call runs on the math kernel on the CPU and on the memory-efficient kernel on
CUDA (:mod:`bench.model.sdpa_kernels`). The attention FLOPs are 1.5x softmax
attention's (``QKᵀ`` over ``H d`` channels, ``AV`` over ``2 H d``: the paper's
two maps each applied to a value of width ``2d``).

The recorded map (:meth:`DiffAttention.attention_map`) is ``A1 − λ A2`` per
differential head, ``[B, H/2, T, S]``. Its weights can be negative and its rows
sum to ``1 − λ``, so attention entropy is not defined for it (the diagnostics
leave it out) and figures draw it on a signed scale.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.attention import Attention
from bench.model.norms import RMSNorm


def lambda_init(depth: int) -> float:
    """λ_init of the layer at 0-based ``depth``: ``0.8 − 0.6 exp(−0.3 depth)``."""
    return 0.8 - 0.6 * math.exp(-0.3 * depth)


LAMBDA_STD = 0.1  # the authors' code: λq1, λk1, λq2, λk2 ~ N(0, 0.1)


class DiffAttention(Attention):
    """Differential attention with ``n_heads / 2`` heads (see the module docstring)."""

    kind = "diff"
    map_is_distribution = False
    value_dim_factor = 2
    score_flops_factor = 1.5

    def __init__(
        self, cfg: ModelConfig, cross: bool = False, scale: float | None = None, layer: int = 0
    ) -> None:
        super().__init__(cfg, cross, scale, layer)
        hd = self.head_dim
        self.lambda_init = lambda_init(layer)
        self.lambda_q1 = nn.Parameter(torch.randn(hd) * LAMBDA_STD)
        self.lambda_k1 = nn.Parameter(torch.randn(hd) * LAMBDA_STD)
        self.lambda_q2 = nn.Parameter(torch.randn(hd) * LAMBDA_STD)
        self.lambda_k2 = nn.Parameter(torch.randn(hd) * LAMBDA_STD)
        self.subln = RMSNorm(2 * hd)

    def lambda_full(self) -> Tensor:
        """λ = exp(λq1·λk1) − exp(λq2·λk2) + λ_init (a 0-d tensor, float32 or wider)."""
        wide = torch.promote_types(self.lambda_q1.dtype, torch.float32)
        one = torch.exp((self.lambda_q1 * self.lambda_k1).sum().to(wide))
        two = torch.exp((self.lambda_q2 * self.lambda_k2).sum().to(wide))
        return one - two + self.lambda_init

    def attention_map(self, q: Tensor, k: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        a = self.scores(q, k, mask, is_causal).softmax(dim=-1)
        B, H, T, S = a.shape
        a = a.view(B, H // 2, 2, T, S)
        return a[:, :, 0] - self.lambda_full().to(a.dtype) * a[:, :, 1]

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool
    ) -> Tensor:
        """``(1 − λ_init) RMSNorm((A1 − λ A2) V)``, ``[B, H/2, T, 2 hd]``."""
        B, KV, S, hd = v.shape
        # value head i of width 2 hd (two adjacent head_dim slices), once per pair member
        v2 = v.reshape(B, KV // 2, 2, S, hd).transpose(2, 3).reshape(B, KV // 2, S, 2 * hd)
        y = super().attend(q, k, v2.repeat_interleave(2, dim=1), mask, is_causal)
        H, T = y.shape[1], y.shape[2]
        y = y.view(B, H // 2, 2, T, 2 * hd)
        y = y[:, :, 0] - self.lambda_full().to(y.dtype) * y[:, :, 1]
        return self.subln(y) * (1.0 - self.lambda_init)

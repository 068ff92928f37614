"""Gated attention: a sigmoid gate on each head's SDPA output, read from the layer input.

Qiu et al. 2025, "Gated Attention for Large Language Models: Non-linearity,
Sparsity, and Attention-Sink-Free" (NeurIPS 2025, arXiv 2505.06708), position G1
(their best): ``Y' = Y ⊙ σ(X W_θ)``, where ``Y`` is each head's SDPA output
before the heads are concatenated and projected by ``W_O``, and ``X`` is the
input the queries, keys and values are projected from (the pre-normed hidden
state under pre-LN). The gate is head-specific: ``elementwise`` has one gate per
head and channel (``n_heads x head_dim`` gates, the paper's best), ``headwise``
one per head (``n_heads`` gates).

The authors' code (qiuzh20/gated_attention, ``modeling_qwen3.py``) appends the
gate's columns to ``q_proj``; here ``W_θ`` is its own bias-free ``nn.Linear``
(the same function: a matrix multiply of the same input), listed in
``weight_blocks()`` with role ``gate`` so every init scheme, µP and the FLOP count
see it. No bias, as in the authors' code, so ``σ`` is about 0.5 on average at
init whatever the init scheme. In cross-attention the gate reads the decoder's
hidden state (the queries' input): the gate modulates what each query receives.

The attention map is unchanged softmax attention (the gate acts after it), so the
diagnostics record it and its entropy as for softmax attention; the first-token
share of that map is what the paper reports gating removes (46.7% -> 4.8%).
"""

from __future__ import annotations

from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.attention import Attention


class GatedAttention(Attention):
    """Softmax attention with an elementwise sigmoid gate on each head's output (G1)."""

    kind = "gated"
    headwise = False

    def __init__(
        self, cfg: ModelConfig, cross: bool = False, scale: float | None = None, layer: int = 0
    ) -> None:
        super().__init__(cfg, cross, scale, layer)
        gates = self.n_heads if self.headwise else self.n_heads * self.head_dim
        self.gate = nn.Linear(cfg.d_model, gates, bias=False)

    def weight_blocks(self) -> list[tuple[str, nn.Linear, slice]]:
        return [*super().weight_blocks(), ("gate", self.gate, slice(0, self.gate.out_features))]

    def merge(self, y: Tensor, x: Tensor) -> Tensor:
        """``y [B, H, T, hd]`` times ``σ(x W_θ)``, then the heads side by side."""
        B, H, T, hd = y.shape
        g = self.gate(x).sigmoid().view(B, T, H, -1)  # [B, T, H, hd | 1]
        return (y.transpose(1, 2) * g.to(y.dtype)).reshape(B, T, H * hd)


class HeadwiseGatedAttention(GatedAttention):
    """Gated attention with one gate per head (the paper's headwise G1 variant)."""

    kind = "gated_headwise"
    headwise = True

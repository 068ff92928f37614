"""The kinds of attention (``model.attention``): one class each, over one base.

Every kind is an :class:`~bench.model.attention.Attention` subclass with the same
projections and :meth:`~bench.model.attention.Attention.project` (so QK-norm,
RoPE, ALiBi/T5 biases, GQA, padding and the sliding window reach every kind the
same way, and the diagnostics' forward hooks find every kind), and overrides only
what differs between SDPA's inputs and the output projection. One registry rather
than one boolean option per paper: the kinds exclude each other (a sigmoid map
has nothing for a second softmax map to be subtracted from), and a sweep compares
them on one axis (``compare: {model.attention: [softmax, gated]}``).

- ``softmax``: :class:`~bench.model.attention.Attention` (Vaswani et al. 2017).
- ``gated`` / ``gated_headwise``: a sigmoid gate on each head's output
  (Qiu et al. 2025, :mod:`bench.model.gated_attention`).
- ``diff``: differential attention (Ye et al. 2025, :mod:`bench.model.diff_attention`).
- ``sigmoid``: sigmoid attention with ``b = -ln n`` (Ramapuram et al. 2025,
  :mod:`bench.model.sigmoid_attention`).
"""

from __future__ import annotations

from bench.config import ModelConfig
from bench.model.attention import Attention
from bench.model.diff_attention import DiffAttention
from bench.model.gated_attention import GatedAttention, HeadwiseGatedAttention
from bench.model.sigmoid_attention import SigmoidAttention

ATTENTIONS: dict[str, type[Attention]] = {
    "softmax": Attention,
    "gated": GatedAttention,
    "gated_headwise": HeadwiseGatedAttention,
    "diff": DiffAttention,
    "sigmoid": SigmoidAttention,
}


def make_attention(
    cfg: ModelConfig, *, cross: bool = False, scale: float | None = None, layer: int = 0
) -> Attention:
    """The ``cfg.attention`` kind of layer at 0-based depth ``layer`` of its stack."""
    return ATTENTIONS[cfg.attention](cfg, cross, scale, layer)

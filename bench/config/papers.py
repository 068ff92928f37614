"""The paper behind each value of an axis added since issue 26, as ``bench variants``
lists it (pure Python). Keys are ``model.FIELD=VALUE`` (or ``model.FIELD`` for an
option that takes a number); each entry names the paper and where its formulation
is in it. The model's docstrings say the same at more length."""

from __future__ import annotations

ATTENTION_PAPERS: dict[str, str] = {
    "model.attention=gated": (
        "Qiu et al. 2025, Gated Attention for LLMs (NeurIPS 2025): sigmoid gate on each "
        "head's SDPA output, elementwise (G1)"
    ),
    "model.attention=gated_headwise": "Qiu et al. 2025: the same gate, one per head",
    "model.attention=diff": (
        "Ye et al. 2025, Differential Transformer (ICLR 2025): two softmax maps, learned "
        "lambda, per-head RMSNorm; heads halve"
    ),
    "model.attention=sigmoid": (
        "Ramapuram et al. 2025, Sigmoid Self-Attention (ICLR 2025): sigmoid(qk/sqrt(d) + b), "
        "b = -ln n (model.sigmoid_bias)"
    ),
    "model.attn_window": (
        "sliding-window (local) attention: Child et al. 2019; Beltagy et al. 2020, "
        "Longformer, Sec. 3.1"
    ),
}

"""The paper behind each axis value and option that has one, for ``bench variants``.

Keys are ``model.FIELD=VALUE`` (an axis value) or ``train.FIELD`` / ``model.FIELD`` (an
option); values say who, where, and in one phrase what. The docstring of the class that
implements each (``bench.model``) cites the same paper with its equations. Pure data: no
torch. ``tests/test_model_norm_variants.py`` checks that every key names a real field
(and value) of the config.
"""

from __future__ import annotations

# Normalization, block and loss
NORM_BLOCK_LOSS: dict[str, str] = {
    "model.norm_type=dyt": (
        "Zhu, Chen, He, LeCun, Liu 2025, Transformers without Normalization (CVPR 2025, "
        "arXiv 2503.10622): gamma*tanh(alpha*x)+beta in place of every norm; alpha_0 = "
        "model.dyt_alpha"
    ),
    "model.norm_placement=peri": (
        "Kim et al. 2025, Peri-LN (ICML 2025, arXiv 2502.02732): x + N(f(N(x))), a final "
        "norm; the same class as sandwich (Ding et al. 2021); its optional embedding norm "
        "is model.embed_scale=norm"
    ),
    "model.norm_placement=mixln": (
        "Li, Yin, Liu 2024, Mix-LN (ICLR 2025, arXiv 2412.13795): Post-LN in the first "
        "floor(model.mixln_post_fraction * layers) blocks, Pre-LN after"
    ),
    "model.block=parallel": (
        "Wang & Komatsuzaki 2021 (GPT-J); Chowdhery et al. 2022, PaLM (arXiv 2204.02311, "
        "Section 2): x + attn(LN(x)) + ffn(LN(x)), one shared LayerNorm"
    ),
    "train.z_loss": (
        "Chowdhery et al. 2022, PaLM (Section 5): + coeff * log(Z)^2 of the output logits "
        "(PaLM: 1e-4); Wortsman et al. 2023 (arXiv 2309.14322): against output-logit divergence"
    ),
}

# Positions
POSITIONS: dict[str, str] = {
    "model.pos_encoding=fire": (
        "Li et al. 2023, Functional Interpolation for Relative Positions Improves Long "
        "Context Transformers (ICLR 2024, arXiv 2310.04418)"
    ),
    "model.rope_scaling=pi": (
        "Chen et al. 2023, Extending Context Window of Large Language Models via "
        "Positional Interpolation (arXiv 2306.15595)"
    ),
    "model.rope_scaling=ntk": "bloc97 2023, NTK-aware scaled RoPE (r/LocalLLaMA; jquesnelle/yarn)",
    "model.rope_scaling=yarn": (
        "Peng et al. 2023, YaRN: Efficient Context Window Extension of Large Language "
        "Models (ICLR 2024, arXiv 2309.00071)"
    ),
}

# Attention
ATTENTION: dict[str, str] = {
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
    "model.sink_tokens": (
        "Xiao, Tian, Chen, Han, Lewis 2023, Efficient Streaming Language Models with "
        "Attention Sinks (ICLR 2024, arXiv 2309.17453), Sec. 3.3: learnable sink token(s) "
        "before every sequence (the paper: 1)"
    ),
}

CITATIONS: dict[str, str] = {**NORM_BLOCK_LOSS, **ATTENTION, **POSITIONS}

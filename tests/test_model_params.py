"""Parameter counts equal a closed-form formula written independently of the model code."""

from __future__ import annotations

import pytest

from bench.config import ModelConfig
from bench.model import build_model


def expected_params(c: ModelConfig) -> int:
    d, h, kv, hd, f, v = c.d_model, c.n_heads, c.kv_heads, c.head_dim, c.ffn_dim, c.vocab_size

    def linear(n_in: int, n_out: int) -> int:
        return n_in * n_out + (n_out if c.bias else 0)

    def norm(n: int) -> int:
        return {"layernorm": n * (2 if c.bias else 1), "rmsnorm": n, "scalenorm": 1}[c.norm_type]

    qk = 2 * norm(hd) if c.qk_norm else 0
    self_attn = linear(d, h * hd) + 2 * linear(d, kv * hd) + linear(h * hd, d) + qk
    ffn = linear(d, f) * (2 if c.ffn == "swiglu" else 1) + linear(f, d)
    norms_per_sublayer = 2 if c.norm_placement == "sandwich" else 1
    final = norm(d) if c.norm_placement in ("pre", "sandwich") else 0
    pos = {"learned": c.max_len * d, "t5": c.t5_num_buckets * h}.get(c.pos_encoding, 0)

    def stack(layers: int, sublayers: int, cross: int) -> int:
        block = self_attn + ffn + cross + sublayers * norms_per_sublayer * norm(d)
        return layers * block + final + pos

    total = v * d + (0 if c.tie_embeddings else d * v)
    if c.arch == "decoder":
        return total + stack(c.n_layers, 2, 0)
    cross = self_attn  # same projections: q from the decoder, k/v from the memory
    return total + stack(c.encoder_layers, 2, 0) + stack(c.n_layers, 3, cross)


CONFIGS = [
    dict(),
    dict(
        ffn="swiglu",
        norm_type="rmsnorm",
        pos_encoding="rope",
        n_kv_heads=2,
        bias=False,
        tie_embeddings=False,
    ),
    dict(norm_placement="sandwich", norm_type="scalenorm", pos_encoding="t5", qk_norm=True),
    dict(arch="encoder_decoder", norm_placement="post", pos_encoding="sinusoidal", ffn="relu"),
    dict(
        arch="encoder_decoder",
        n_encoder_layers=3,
        pos_encoding="t5",
        n_kv_heads=1,
        d_ff=40,
        tie_embeddings=False,
    ),
    dict(
        arch="encoder_decoder",
        norm_placement="deepnorm",
        qk_norm=True,
        bias=False,
        pos_encoding="alibi",
    ),
    dict(norm_placement="sandwich", n_layers=5, d_model=48, n_heads=6, n_kv_heads=3, ffn="swiglu"),
]


@pytest.mark.parametrize(
    "overrides", CONFIGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default"
)
def test_parameter_count_matches_the_closed_form(overrides):
    cfg = ModelConfig(
        **{"d_model": 32, "n_heads": 4, "n_layers": 2, "max_len": 20, "vocab_size": 30, **overrides}
    )
    model = build_model(cfg)
    assert sum(p.numel() for p in model.parameters()) == expected_params(cfg)


def test_gpt2_small_has_its_published_size():
    # GPT-2 small: 124M parameters with its 1024-position table and 50257-token vocabulary.
    cfg = ModelConfig(d_model=768, n_layers=12, n_heads=12, max_len=1024, vocab_size=50257)
    assert round(expected_params(cfg) / 1e6) == 124


def test_swiglu_default_width_keeps_the_ffn_near_a_4x_gelu_ffn():
    d = 96
    gelu = ModelConfig(d_model=d, ffn="gelu", bias=False).ffn_dim * d * 2
    swiglu = ModelConfig(d_model=d, ffn="swiglu", bias=False).ffn_dim * d * 3
    assert abs(swiglu - gelu) / gelu < 0.01

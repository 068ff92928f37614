"""Norms do what their papers say; the model runs under bf16 autocast and respects dropout."""

from __future__ import annotations

import math

import pytest
import torch

from bench.config import ModelConfig
from bench.diagnostics.attention.recorder import AttentionRecorder
from bench.model import build_model
from bench.model.attention import attention_inputs
from bench.model.norms import NORMS, LayerNorm, RMSNorm, ScaleNorm


def test_layernorm_centres_and_scales_each_vector():
    x = torch.randn(3, 5, 8) * 4 + 2
    y = LayerNorm(8)(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(3, 5), atol=1e-3, rtol=0)
    assert LayerNorm(8, bias=False).bias is None


def test_rmsnorm_divides_by_the_root_mean_square_without_centring():
    x = torch.randn(4, 8) + 3
    y = RMSNorm(8)(x)
    torch.testing.assert_close(y, x / x.pow(2).mean(-1, keepdim=True).add(1e-5).sqrt())
    assert y.mean() > 0.5  # not centred


def test_scalenorm_is_one_learned_scalar_times_the_unit_vector():
    norm = ScaleNorm(16)
    assert [p.numel() for p in norm.parameters()] == [1]
    assert norm.g.item() == pytest.approx(math.sqrt(16))
    x = torch.randn(3, 16)
    torch.testing.assert_close(norm(x).norm(dim=-1), torch.full((3,), 4.0))
    torch.testing.assert_close(norm(x) / 4, x / x.norm(dim=-1, keepdim=True))


@pytest.mark.parametrize("name", sorted(NORMS))
def test_norms_return_the_input_dtype(name):
    x = torch.randn(2, 8, dtype=torch.bfloat16)
    assert NORMS[name](8)(x).dtype == torch.bfloat16


FLOAT64_FORMULAS = {  # (x, norm) -> the norm's output computed in float64
    "layernorm": lambda x, n: (
        (x - x.mean(-1, keepdim=True)) / (x.var(-1, unbiased=False, keepdim=True) + 1e-5).sqrt()
    ),
    "rmsnorm": lambda x, n: x / (x.pow(2).mean(-1, keepdim=True) + 1e-5).sqrt(),
    "scalenorm": lambda x, n: n.g * x / x.norm(dim=-1, keepdim=True),
    "dyt": lambda x, n: n.weight * torch.tanh(n.alpha * x) + n.bias,
}


@pytest.mark.parametrize("name", sorted(NORMS))
def test_norms_keep_float64_in_a_float64_model(name):
    """``model.double()`` (reference and gradient checks) neither fails nor drops to float32:
    the upcast for bf16 must not be a downcast for float64."""
    x = torch.randn(4, 8, dtype=torch.float64) * 3 + 1
    norm = NORMS[name](8).double()
    y = norm(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, FLOAT64_FORMULAS[name](x, norm), atol=1e-12, rtol=0)


def test_qk_norm_normalises_each_head_of_queries_and_keys():
    torch.manual_seed(0)
    cfg = ModelConfig(
        d_model=32, n_heads=4, qk_norm=True, norm_type="scalenorm", pos_encoding="nope"
    )
    attn = build_model(cfg).blocks[0].attn
    assert attn.q_norm.dim == attn.k_norm.dim == cfg.head_dim
    attn.q_norm.g.data.fill_(1e3)  # very peaked scores -> near one-hot probabilities
    with AttentionRecorder({"a": attn}) as recorder:
        attn(torch.randn(1, 6, 32), attention_inputs(6, 6, causal=True, device=torch.device("cpu")))
    assert recorder.records["a"].probs.max(-1).values.min() > 0.99


CASES = [
    dict(pos_encoding="rope", qk_norm=True, n_kv_heads=2, norm_type="rmsnorm", ffn="swiglu"),
    dict(pos_encoding="alibi", norm_placement="sandwich", norm_type="scalenorm"),
    dict(arch="encoder_decoder", pos_encoding="t5", norm_placement="deepnorm"),
    dict(arch="encoder_decoder", pos_encoding="sinusoidal", norm_placement="post", qk_norm=True),
]


@pytest.mark.parametrize("overrides", CASES)
def test_forward_and_backward_work_under_bf16_autocast(overrides):
    torch.manual_seed(0)
    cfg = ModelConfig(d_model=32, n_heads=4, n_layers=2, max_len=16, vocab_size=30, **overrides)
    model = build_model(cfg)
    x = torch.randint(0, 30, (2, 8))
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[1, 6:] = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x, pad) if cfg.arch == "decoder" else model(x, x, pad)
    assert logits.dtype == torch.bfloat16
    ref = model(x, pad) if cfg.arch == "decoder" else model(x, x, pad)
    assert (logits.float() - ref).abs().max() < 0.1  # same function, lower precision
    logits.float().logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_dropout_is_active_in_training_and_off_in_eval():
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_heads=4, dropout=0.5, vocab_size=30))
    x = torch.randint(0, 30, (2, 8))
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))

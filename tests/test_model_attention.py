"""Attention: GQA/MQA semantics, masks, probabilities recorded by hooks, padding invariance."""

from __future__ import annotations

import pytest
import torch

from bench.config import ModelConfig
from bench.diagnostics.attention.recorder import AttentionRecorder, attention_modules
from bench.model import build_model
from bench.model.attention import Attention, attention_inputs
from bench.model.positional import POSITIONAL

CPU = torch.device("cpu")


def _cfg(**kw) -> ModelConfig:
    base = dict(d_model=32, n_heads=4, n_layers=2, max_len=32, vocab_size=50)
    base.update(kw)
    return ModelConfig(**base)


def _expand_kv_to_mha(gqa_state: dict, cfg_gqa: ModelConfig) -> dict:
    """MHA weights computing what a GQA model computes: each K/V head copied to its query group."""
    h, kv, hd, d = cfg_gqa.n_heads, cfg_gqa.kv_heads, cfg_gqa.head_dim, cfg_gqa.d_model
    out = {}
    for name, w in gqa_state.items():
        if name.endswith("qkv.weight") or name.endswith("qkv.bias"):
            q, k, v = w.split([h * hd, kv * hd, kv * hd], dim=0)
            rest = w.shape[1:]
            k = k.reshape(kv, hd, *rest).repeat_interleave(h // kv, dim=0).reshape(h * hd, *rest)
            v = v.reshape(kv, hd, *rest).repeat_interleave(h // kv, dim=0).reshape(h * hd, *rest)
            w = torch.cat([q, k, v], dim=0)
        out[name] = w
    assert d == h * hd
    return out


@pytest.mark.parametrize("n_kv_heads", [1, 2])
@pytest.mark.parametrize("pos", ["rope", "alibi"])
def test_grouped_query_attention_equals_mha_with_kv_heads_shared_by_their_group(n_kv_heads, pos):
    torch.manual_seed(0)
    cfg_g = _cfg(n_kv_heads=n_kv_heads, pos_encoding=pos)
    gqa = build_model(cfg_g).eval()
    mha = build_model(_cfg(pos_encoding=pos)).eval()
    mha.load_state_dict(_expand_kv_to_mha(gqa.state_dict(), cfg_g))
    x = torch.randint(0, 50, (2, 9))
    torch.testing.assert_close(gqa(x), mha(x), atol=1e-5, rtol=1e-5)


def test_n_kv_heads_equal_to_n_heads_is_exactly_multi_head_attention():
    torch.manual_seed(0)
    mha = build_model(_cfg()).eval()
    gqa = build_model(_cfg(n_kv_heads=4)).eval()
    gqa.load_state_dict(mha.state_dict())  # same parameter names and shapes
    x = torch.randint(0, 50, (2, 9))
    torch.testing.assert_close(gqa(x), mha(x), atol=0, rtol=0)


def test_multi_query_attention_has_one_kv_head():
    cfg = _cfg(n_kv_heads=1)
    attn = Attention(cfg)
    d, hd = cfg.d_model, cfg.head_dim
    assert attn.qkv.weight.shape == (d + 2 * hd, d)
    n_mha = sum(p.numel() for p in Attention(_cfg()).parameters())
    n_mqa = sum(p.numel() for p in attn.parameters())
    assert n_mha - n_mqa == 2 * (d - hd) * (
        d + 1
    )  # K and V shrink from d to hd outputs (with bias)


def test_fast_causal_path_is_used_without_padding_or_bias():
    inputs = attention_inputs(5, 5, causal=True, device=CPU)
    assert inputs.mask is None and inputs.is_causal
    bias = torch.zeros(2, 5, 5)
    inputs = attention_inputs(5, 5, causal=True, device=CPU, bias=bias)
    assert not inputs.is_causal and inputs.mask is not None
    assert torch.isneginf(inputs.mask[0, 0]).equal(torch.ones(5, 5, dtype=torch.bool).triu(1))


def test_a_pad_mask_without_padding_keeps_the_fast_path_and_the_result():
    no_pad = torch.zeros(2, 5, dtype=torch.bool)
    inputs = attention_inputs(5, 5, causal=True, device=CPU, key_pad=no_pad)
    assert inputs.mask is None and inputs.is_causal
    torch.manual_seed(0)
    model = build_model(_cfg()).eval()
    x = torch.randint(0, 50, (2, 5))
    torch.testing.assert_close(model(x, no_pad), model(x))


def test_a_query_with_only_padded_keys_gets_finite_output():
    pad = torch.tensor([[True, True, True]])
    inputs = attention_inputs(2, 3, causal=False, device=CPU, key_pad=pad)
    cross = Attention(_cfg(), cross=True)
    y = cross(torch.randn(1, 2, 32), inputs, memory=torch.randn(1, 3, 32))
    assert torch.isfinite(y).all()


def _self_attention_case(pos: str, causal: bool):
    torch.manual_seed(0)
    cfg = _cfg(pos_encoding=pos, n_kv_heads=2)
    attn = Attention(cfg).eval()
    pe = POSITIONAL[pos](cfg, causal)
    x = torch.randn(3, 7, 32)
    pad = torch.zeros(3, 7, dtype=torch.bool)
    pad[0, 5:] = True
    pad[2, 6:] = True
    inputs = attention_inputs(
        7,
        7,
        causal=causal,
        device=CPU,
        key_pad=pad,
        bias=pe.bias(7, 7, CPU),
        rotary=pe.rotary(7, CPU),
    )
    return cfg, attn, x, pad, inputs


@pytest.mark.parametrize("pos", ["rope", "alibi", "t5", "nope"])
@pytest.mark.parametrize("causal", [True, False])
def test_recorded_probabilities_sum_to_one_are_zero_where_masked_and_reproduce_sdpa(pos, causal):
    cfg, attn, x, pad, inputs = _self_attention_case(pos, causal)
    with AttentionRecorder({"a": attn}) as recorder:
        y = attn(x, inputs)
    p = recorder.records["a"].probs
    assert p is not None and p.shape == (3, 4, 7, 7) and not p.requires_grad
    torch.testing.assert_close(p.sum(-1), torch.ones(3, 4, 7))
    masked = pad[:, None, None, :].expand(3, 4, 7, 7)
    if causal:
        masked = masked | torch.ones(7, 7, dtype=torch.bool).triu(1)
    assert (p[masked] == 0).all()
    # probabilities x V, through the output projection, is what SDPA produced
    hd, kv = cfg.head_dim, cfg.kv_heads
    _, _, v = attn.qkv(x).split([4 * hd, kv * hd, kv * hd], dim=-1)
    v = v.view(3, 7, kv, hd).transpose(1, 2).repeat_interleave(4 // kv, dim=1)
    manual = attn.out((p @ v).transpose(1, 2).reshape(3, 7, 32))
    torch.testing.assert_close(manual, y, atol=1e-5, rtol=1e-5)


def test_a_recorder_sees_fast_path_causal_probs_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = build_model(_cfg()).eval()
    layers = dict(attention_modules(model))
    assert len(layers) == 2
    with AttentionRecorder(layers) as recorder:
        model(torch.randint(0, 50, (1, 6)))
    assert set(recorder.records) == set(layers)
    for rec in recorder.records.values():
        assert rec.probs.shape == (1, 4, 6, 6)
        assert (rec.probs[..., torch.ones(6, 6, dtype=torch.bool).triu(1)] == 0).all()
    # the model only computes: no hook stays, and nothing is recorded on it
    assert not any(m._forward_hooks for m in model.modules())
    before = len(recorder.records)
    model(torch.randint(0, 50, (1, 6)))
    assert len(recorder.records) == before


def test_cross_attention_records_probs_over_source_positions():
    torch.manual_seed(0)
    model = build_model(_cfg(arch="encoder_decoder")).eval()
    cross = model.decoder.blocks[0].cross_attn
    src_pad = torch.tensor([[False] * 5 + [True] * 2])
    with AttentionRecorder({"cross": cross}) as recorder:
        model(torch.randint(0, 50, (1, 7)), torch.randint(0, 50, (1, 4)), src_pad)
    probs = recorder.records["cross"].probs
    assert probs.shape == (1, 4, 4, 7)
    assert (probs[..., 5:] == 0).all()


POS = ["sinusoidal", "learned", "rope", "alibi", "t5", "nope"]


@pytest.mark.parametrize("pos", POS)
def test_encoder_padding_never_changes_outputs_at_real_positions(pos):
    torch.manual_seed(0)
    model = build_model(_cfg(arch="encoder_decoder", pos_encoding=pos, n_kv_heads=2)).eval()
    src = torch.randint(1, 50, (2, 6))
    tgt = torch.randint(1, 50, (2, 5))
    junk = torch.randint(1, 50, (2, 3))
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[:, 6:] = True
    ref_mem = model.encode(src)
    mem = model.encode(torch.cat([src, junk], 1), pad)
    torch.testing.assert_close(mem[:, :6], ref_mem, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        model(torch.cat([src, junk], 1), tgt, pad), model(src, tgt), atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("pos", POS)
def test_rows_of_a_padded_batch_match_each_row_alone(pos):
    torch.manual_seed(0)
    model = build_model(_cfg(arch="encoder_decoder", pos_encoding=pos)).eval()
    lengths = [4, 7, 2]
    src = torch.randint(1, 50, (3, 7))
    pad = torch.arange(7)[None, :] >= torch.tensor(lengths)[:, None]
    tgt = torch.randint(1, 50, (3, 5))
    batched = model(src, tgt, pad)
    for i, n in enumerate(lengths):
        alone = model(src[i : i + 1, :n], tgt[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos", POS)
def test_decoder_pad_mask_hides_padded_tokens_from_real_ones(pos):
    torch.manual_seed(0)
    model = build_model(_cfg(pos_encoding=pos)).eval()
    x = torch.randint(1, 50, (2, 8))
    pad = torch.zeros(2, 8, dtype=torch.bool)
    pad[0, :3] = True  # left padding
    pad[1, 2] = True  # a hole
    y = x.clone()
    y[pad] = (x[pad] + 7) % 50  # different tokens at padded positions only
    a, b = model(x, pad), model(y, pad)
    torch.testing.assert_close(a[~pad], b[~pad], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(a).all()

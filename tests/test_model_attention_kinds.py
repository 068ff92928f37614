"""model.attention kinds (gated, diff, sigmoid) and model.attn_window, each against its
paper's equations written out here in float64: forward and gradient."""

from __future__ import annotations

import math

import pytest
import torch

from bench.config import AttentionKind, ModelConfig
from bench.model import build_model
from bench.model.attention import attention_inputs
from bench.model.attention_kinds import ATTENTIONS, make_attention
from bench.model.diff_attention import lambda_init

torch.set_default_dtype(torch.float32)
SMALL = {"d_model": 32, "n_heads": 4, "n_layers": 2, "max_len": 32, "vocab_size": 20}


def test_the_registry_is_the_config_axis():
    assert set(ATTENTIONS) == set(AttentionKind.__args__)


def _layer(attention: str, layer: int = 0, **axes):
    torch.manual_seed(0)
    cfg = ModelConfig(**{**SMALL, **axes}, attention=attention)
    att = make_attention(cfg, layer=layer).double()
    for p in att.parameters():  # non-trivial values everywhere (biases, norm gains too)
        torch.nn.init.normal_(p, 0.0, 0.3)
    return cfg, att


def _x(t: int = 7, b: int = 2) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(b, t, SMALL["d_model"], dtype=torch.float64, requires_grad=True)


def _causal(t: int) -> torch.Tensor:
    return torch.ones(t, t, dtype=torch.bool).tril()


def _split_qkv(att, x, H, KV, hd):
    """q [B, H, T, hd], k and v [B, KV, T, hd] from the fused weight, written out."""
    W, b = att.qkv.weight, att.qkv.bias
    q = x @ W[: H * hd].T + b[: H * hd]
    k = x @ W[H * hd : (H + KV) * hd].T + b[H * hd : (H + KV) * hd]
    v = x @ W[(H + KV) * hd :].T + b[(H + KV) * hd :]
    B, T, _ = x.shape
    return (
        q.view(B, T, H, hd).permute(0, 2, 1, 3),
        k.view(B, T, KV, hd).permute(0, 2, 1, 3),
        v.view(B, T, KV, hd).permute(0, 2, 1, 3),
    )


def _check(att, reference, x, inputs):
    """The layer and the reference agree in value and in every gradient."""
    ours = att(x, inputs)
    theirs = reference(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(ours)
    params = [x, *att.parameters()]
    g1 = torch.autograd.grad((ours * w).sum(), params)
    g2 = torch.autograd.grad((theirs * w).sum(), params, allow_unused=True)
    for a, b in zip(g1, g2, strict=True):
        torch.testing.assert_close(a, torch.zeros_like(a) if b is None else b, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------- gated (Qiu et al. 2025)


@pytest.mark.parametrize("kind", ["gated", "gated_headwise"])
@pytest.mark.parametrize("kv", [4, 2])
def test_gated_attention_is_sdpa_output_times_a_sigmoid_of_the_input(kind, kv):
    # G1: Y' = Y * sigmoid(X W_theta), per head before concat and W_O; X = the layer input
    cfg, att = _layer(kind, n_kv_heads=kv)
    H, KV, hd, T = cfg.n_heads, cfg.kv_heads, cfg.head_dim, 7

    def reference(x):
        q, k, v = _split_qkv(att, x, H, KV, hd)
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        p = s.masked_fill(~_causal(T), -math.inf).softmax(-1)
        y = (p @ v).permute(0, 2, 1, 3)  # [B, T, H, hd]
        g = torch.sigmoid(x @ att.gate.weight.T)
        g = g.view(*x.shape[:2], H, hd if kind == "gated" else 1)
        return (y * g).reshape(*x.shape[:2], H * hd) @ att.out.weight.T + att.out.bias

    assert att.gate.bias is None and att.gate.out_features == (H * hd if kind == "gated" else H)
    _check(att, reference, _x(T), attention_inputs(T, T, causal=True, device=torch.device("cpu")))


def test_a_gate_at_init_passes_about_half_of_each_head():
    # no bias: sigmoid(x W) is 0.5 on average at init, as in the authors' code
    model = build_model(ModelConfig(**SMALL, attention="gated"))
    x = torch.randn(4, 16, SMALL["d_model"])
    with torch.no_grad():
        g = torch.sigmoid(model.blocks[0].attn.gate(x))
    assert abs(float(g.mean()) - 0.5) < 0.05


# ------------------------------------------------------------ differential (Ye et al. 2025)


def test_lambda_init_uses_the_0_based_depth_of_the_authors_code():
    assert lambda_init(0) == pytest.approx(0.2)  # l = 1 in the paper: 0.8 - 0.6
    assert lambda_init(1) == pytest.approx(0.8 - 0.6 * math.exp(-0.3))
    model = build_model(ModelConfig(**{**SMALL, "n_layers": 3}, attention="diff"))
    assert [b.attn.lambda_init for b in model.blocks] == [lambda_init(i) for i in range(3)]


@pytest.mark.parametrize("kv", [4, 2])
@pytest.mark.parametrize("depth", [0, 3])
def test_differential_attention_follows_the_authors_multihead_diffattn(kv, depth):
    # microsoft/unilm Diff-Transformer/multihead_diffattn.py, written out: num_heads = H/2
    # heads of 2*hd values, 2*num_heads query and 2*num_kv_heads key heads of hd, repeat_kv
    cfg, att = _layer("diff", layer=depth, n_kv_heads=kv)
    H, KV, hd, T = cfg.n_heads, cfg.kv_heads, cfg.head_dim, 7
    num_heads, num_kv_heads = H // 2, KV // 2
    n_rep = num_heads // num_kv_heads
    lam_init = 0.8 - 0.6 * math.exp(-0.3 * depth)

    def repeat_kv(t, n):
        return t[:, :, None].expand(t.shape[0], t.shape[1], n, *t.shape[2:]).flatten(1, 2)

    def reference(x):
        B = x.shape[0]
        W, b = att.qkv.weight, att.qkv.bias
        q = (x @ W[: H * hd].T + b[: H * hd]).view(B, T, 2 * num_heads, hd)
        k = (x @ W[H * hd : (H + KV) * hd].T + b[H * hd : (H + KV) * hd]).view(
            B, T, 2 * num_kv_heads, hd
        )
        v = (x @ W[(H + KV) * hd :].T + b[(H + KV) * hd :]).view(B, T, num_kv_heads, 2 * hd)
        q = q.transpose(1, 2) * hd**-0.5
        k = repeat_kv(k.transpose(1, 2), n_rep)
        v = repeat_kv(v.transpose(1, 2), n_rep)
        w = q @ k.transpose(-1, -2)
        w = w + torch.triu(torch.full((T, T), -math.inf, dtype=w.dtype), 1)
        w = w.softmax(-1)
        l1 = torch.exp(torch.sum(att.lambda_q1 * att.lambda_k1))
        l2 = torch.exp(torch.sum(att.lambda_q2 * att.lambda_k2))
        lam = l1 - l2 + lam_init
        w = w.view(B, num_heads, 2, T, T)
        w = w[:, :, 0] - lam * w[:, :, 1]
        a = w @ v
        a = a * torch.rsqrt(a.pow(2).mean(-1, keepdim=True) + 1e-5) * att.subln.weight
        a = a * (1 - lam_init)
        a = a.transpose(1, 2).reshape(B, T, num_heads * 2 * hd)
        return a @ att.out.weight.T + att.out.bias

    _check(att, reference, _x(T), attention_inputs(T, T, causal=True, device=torch.device("cpu")))


def test_lambda_vectors_start_from_n_0_0_1():
    torch.manual_seed(0)
    cfg = ModelConfig(**{**SMALL, "d_model": 256, "n_heads": 2}, attention="diff")
    lam = torch.cat([make_attention(cfg).lambda_q1.detach() for _ in range(20)])
    assert float(lam.std()) == pytest.approx(0.1, rel=0.1)


# ------------------------------------------------------------ sigmoid (Ramapuram et al. 2025)


@pytest.mark.parametrize("bias", [None, -2.5])
@pytest.mark.parametrize("kv", [4, 1])
def test_sigmoid_attention_is_an_unnormalized_sigmoid_with_bias_minus_ln_n(bias, kv):
    cfg, att = _layer("sigmoid", n_kv_heads=kv, sigmoid_bias=bias)
    H, KV, hd, T = cfg.n_heads, cfg.kv_heads, cfg.head_dim, 9
    b = -math.log(T) if bias is None else bias

    def reference(x):
        q, k, v = _split_qkv(att, x, H, KV, hd)
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        w = torch.sigmoid(q @ k.transpose(-1, -2) / math.sqrt(hd) + b) * _causal(T)
        y = (w @ v).permute(0, 2, 1, 3).reshape(x.shape[0], T, H * hd)
        return y @ att.out.weight.T + att.out.bias

    _check(att, reference, _x(T), attention_inputs(T, T, causal=True, device=torch.device("cpu")))


# ------------------------------------------------------------------------- sliding window


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("kind", ["softmax", "sigmoid"])
def test_a_sliding_window_hides_keys_farther_than_the_window(kind, causal):
    cfg, att = _layer(kind)
    H, hd, T, W = cfg.n_heads, cfg.head_dim, 9, 3
    near = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).abs() < W
    allowed = near & _causal(T) if causal else near

    def reference(x):
        q, k, v = _split_qkv(att, x, H, H, hd)
        s = q @ k.transpose(-1, -2) / math.sqrt(hd)
        if kind == "softmax":
            w = s.masked_fill(~allowed, -math.inf).softmax(-1)
        else:
            w = torch.sigmoid(s - math.log(T)) * allowed
        y = (w @ v).permute(0, 2, 1, 3).reshape(x.shape[0], T, H * hd)
        return y @ att.out.weight.T + att.out.bias

    inputs = attention_inputs(T, T, causal=causal, device=torch.device("cpu"), window=W)
    _check(att, reference, _x(T), inputs)


def test_a_window_covering_the_sequence_keeps_the_causal_fast_path():
    inputs = attention_inputs(8, 8, causal=True, device=torch.device("cpu"), window=8)
    assert inputs.mask is None and inputs.is_causal


def test_the_model_output_at_t_does_not_depend_on_tokens_beyond_the_window():
    # two layers of window 3 reach back 2 + 2 = 4 positions
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL, attn_window=3, pos_encoding="rope")).double()
    emb = torch.randn(1, 12, SMALL["d_model"], dtype=torch.float64, requires_grad=True)
    h = model.blocks[0](emb, attention_inputs(12, 12, causal=True, device=emb.device, window=3))
    h = model.blocks[1](h, attention_inputs(12, 12, causal=True, device=emb.device, window=3))
    (g,) = torch.autograd.grad(h[0, 11].sum(), emb)
    reached = g[0].abs().sum(-1) > 0
    assert reached.tolist() == [False] * 7 + [True] * 5


# ------------------------------------------------------------------ listing and presets


def test_bench_variants_lists_every_kind_and_the_window_with_its_paper(capsys):
    from bench.cli.train import cmd_variants
    from bench.config.citations import ATTENTION as ATTENTION_PAPERS

    assert cmd_variants(None) == 0
    out = capsys.readouterr().out
    for kind in set(AttentionKind.__args__) - {"softmax"}:
        assert f"model.attention={kind}" in ATTENTION_PAPERS
    for key, paper in ATTENTION_PAPERS.items():
        assert f"{key}" in out and paper in out
    assert "gated-attention" in out and "diff-attention" in out


@pytest.mark.parametrize(
    ("preset", "kind"), [("gated-attention", "gated"), ("diff-attention", "diff")]
)
def test_the_attention_presets_build_the_papers_decoder(preset, kind):
    from bench.config import build_run_config

    cfg = build_run_config(overrides={"variant": preset}).model
    assert (cfg.attention, cfg.norm_type, cfg.pos_encoding, cfg.ffn) == (
        kind,
        "rmsnorm",
        "rope",
        "swiglu",
    )
    model = build_model(cfg.model_copy(update={"vocab_size": 20, "d_model": 32}))
    assert model(torch.randint(0, 20, (1, 6))).shape == (1, 6, 20)

"""DeepNet constants and the init schemes' standard deviations."""

from __future__ import annotations

import math

import pytest
import torch

from bench.config import ModelConfig
from bench.model import build_model, deepnorm_constants
from bench.model.deepnorm import DeepNorm


@pytest.mark.parametrize("n", [1, 6, 18, 100])
def test_decoder_only_deepnorm_constants_follow_the_paper(n):
    c = deepnorm_constants(ModelConfig(n_layers=n))
    assert c == {
        "decoder": {
            "alpha": pytest.approx((2 * n) ** 0.25),
            "beta": pytest.approx((8 * n) ** -0.25),
        }
    }


@pytest.mark.parametrize("n,m", [(6, 6), (12, 3), (100, 100)])
def test_encoder_decoder_deepnorm_constants_follow_the_paper(n, m):
    c = deepnorm_constants(ModelConfig(arch="encoder_decoder", n_encoder_layers=n, n_layers=m))
    assert c["encoder"]["alpha"] == pytest.approx(0.81 * (n**4 * m) ** (1 / 16))
    assert c["encoder"]["beta"] == pytest.approx(0.87 * (n**4 * m) ** (-1 / 16))
    assert c["decoder"]["alpha"] == pytest.approx((3 * m) ** 0.25)
    assert c["decoder"]["beta"] == pytest.approx((12 * m) ** -0.25)


def test_deepnorm_blocks_scale_the_residual_by_their_stacks_alpha():
    cfg = ModelConfig(
        arch="encoder_decoder",
        norm_placement="deepnorm",
        n_encoder_layers=4,
        n_layers=3,
        d_model=16,
    )
    model = build_model(cfg)
    c = deepnorm_constants(cfg)
    enc = [m.alpha for m in model.encoder.modules() if isinstance(m, DeepNorm)]
    dec = [m.alpha for m in model.decoder.modules() if isinstance(m, DeepNorm)]
    assert enc == [pytest.approx(c["encoder"]["alpha"])] * 4 * 2  # attn + ffn per layer
    assert dec == [pytest.approx(c["decoder"]["alpha"])] * 3 * 3  # attn + cross + ffn
    assert model.encoder.final_norm is None and model.decoder.final_norm is None


def test_deepnorm_residual_is_layernorm_of_alpha_x_plus_f_x():
    torch.manual_seed(0)
    cfg = ModelConfig(norm_placement="deepnorm", n_layers=3, d_model=16)
    res = build_model(cfg).blocks[0].ffn_res
    x = torch.randn(2, 5, 16)
    f = torch.nn.Linear(16, 16)
    expected = torch.nn.functional.layer_norm(res.alpha * x + f(x), (16,))
    torch.testing.assert_close(res(x, f), expected)
    assert res.alpha == pytest.approx(6**0.25)


def _std(w: torch.Tensor) -> float:
    return w.detach().float().std().item()


def test_deepnorm_init_is_beta_scaled_xavier_for_ffn_value_and_output_and_plain_for_query_key():
    torch.manual_seed(0)
    cfg = ModelConfig(
        norm_placement="deepnorm", d_model=256, n_heads=4, n_kv_heads=2, n_layers=6, max_len=8
    )
    beta = (8 * 6) ** -0.25
    model = build_model(cfg)
    assert cfg.init_scheme == "deepnorm"
    d, qd, kvd, f = 256, 256, 128, cfg.ffn_dim

    def xavier(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
        return gain * math.sqrt(2 / (fan_in + fan_out))

    w = torch.cat([b.attn.qkv.weight for b in model.blocks], 1)  # more samples, same law
    checks = {
        "q": (w[:qd], xavier(d, qd)),
        "k": (w[qd : qd + kvd], xavier(d, kvd)),
        "v": (w[qd + kvd :], xavier(d, kvd, beta)),
        "out": (torch.cat([b.attn.out.weight for b in model.blocks]), xavier(qd, d, beta)),
        "fc_in": (torch.cat([b.ffn.fc_in.weight for b in model.blocks]), xavier(d, f, beta)),
        "fc_out": (torch.cat([b.ffn.fc_out.weight for b in model.blocks]), xavier(f, d, beta)),
    }
    for name, (weight, std) in checks.items():
        assert _std(weight) == pytest.approx(std, rel=0.03), name


def test_gpt2_init_uses_0_02_and_scales_residual_outputs_by_depth():
    torch.manual_seed(0)
    cfg = ModelConfig(
        d_model=256,
        n_heads=4,
        n_layers=8,
        max_len=64,
        tie_embeddings=False,
        vocab_size=512,
        init="gpt2",
    )
    model = build_model(cfg)
    scaled = 0.02 / math.sqrt(2 * 8)
    blocks = model.blocks
    assert _std(torch.cat([b.attn.qkv.weight for b in blocks])) == pytest.approx(0.02, rel=0.03)
    assert _std(torch.cat([b.ffn.fc_in.weight for b in blocks])) == pytest.approx(0.02, rel=0.03)
    assert _std(torch.cat([b.attn.out.weight for b in blocks])) == pytest.approx(scaled, rel=0.03)
    assert _std(torch.cat([b.ffn.fc_out.weight for b in blocks])) == pytest.approx(scaled, rel=0.03)
    assert _std(model.tok_embed.weight) == pytest.approx(0.02, rel=0.03)
    assert _std(model.lm_head.weight) == pytest.approx(0.02, rel=0.03)
    assert all((b.attn.qkv.bias == 0).all() for b in blocks)


def test_xavier_init_is_glorot_uniform_per_projection_with_d_model_scaled_embeddings():
    torch.manual_seed(0)
    d, layers = 256, 4
    cfg = ModelConfig(d_model=d, n_heads=4, n_layers=layers, max_len=64, tie_embeddings=False)
    model = build_model(cfg)
    assert cfg.resolved() == {"init": "xavier", "embed_scale": "sqrt_d"}  # the auto default
    f = cfg.ffn_dim

    def glorot(fan_in: int, fan_out: int) -> float:  # std of U(-a, a), a = sqrt(6/(in+out))
        return math.sqrt(2 / (fan_in + fan_out))

    qkv = torch.cat([b.attn.qkv.weight for b in model.blocks], 1)
    assert qkv.abs().max() <= math.sqrt(6 / (2 * d))  # each of q, k, v has its own fans
    assert _std(qkv) == pytest.approx(glorot(d, d), rel=0.03)
    fc_in = torch.cat([b.ffn.fc_in.weight for b in model.blocks])
    assert _std(fc_in) == pytest.approx(glorot(d, f), rel=0.03)
    assert _std(model.tok_embed.weight) == pytest.approx(d**-0.5, rel=0.03)
    assert _std(model.lm_head.weight) == pytest.approx(d**-0.5, rel=0.03)
    scaled = model.embed(torch.arange(200)[None])
    assert scaled.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=0.05)


def test_deepnorm_init_gives_embeddings_unit_rms_after_the_sqrt_d_scale():
    torch.manual_seed(0)
    cfg = ModelConfig(norm_placement="deepnorm", d_model=256, vocab_size=512, max_len=8)
    model = build_model(cfg)
    assert _std(model.tok_embed.weight) == pytest.approx(256**-0.5, rel=0.03)
    rms = model.embed(torch.arange(512)[None]).pow(2).mean().sqrt().item()
    assert rms == pytest.approx(1.0, rel=0.05)


def test_torch_init_keeps_pytorch_defaults():
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=128, init="torch", vocab_size=512))
    assert _std(model.tok_embed.weight) == pytest.approx(1.0, rel=0.05)  # nn.Embedding: N(0, 1)
    bound = 1 / math.sqrt(128)  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert model.blocks[0].attn.qkv.weight.abs().max() <= bound
    assert _std(model.blocks[0].attn.qkv.weight) == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_tied_head_shares_the_embedding_and_untied_does_not():
    tied = build_model(ModelConfig(d_model=16, arch="encoder_decoder"))
    assert tied.lm_head.weight is tied.tok_embed.weight
    untied = build_model(ModelConfig(d_model=16, tie_embeddings=False))
    assert untied.lm_head.weight is not untied.tok_embed.weight

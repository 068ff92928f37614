"""Which SDPA kernel each attention variant gets: what the model passes, what PyTorch picks."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from bench.config import ModelConfig
from bench.model import build_model
from bench.model.positional import POSITIONAL
from bench.model.sdpa_kernels import (
    attention_calls,
    has_additive_bias,
    kernel_summary,
    predict_kernel,
    selected_kernel,
)

SMALL = {"d_model": 32, "n_heads": 4, "n_layers": 1, "max_len": 32, "vocab_size": 20}
ARCHS = ["decoder", "encoder_decoder"]
DECODER_ONLY = {"fire"}  # ModelConfig refuses it in an encoder-decoder (causal-only)


def _skip_undefined(pos: str, arch: str) -> None:
    if pos in DECODER_ONLY and arch != "decoder":
        pytest.skip(f"{pos} is decoder-only")


def _spy_sdpa(monkeypatch) -> list[tuple[bool, bool, int, int]]:
    """Record (mask given, is_causal, t_q, t_k) of every SDPA call the model makes."""
    seen: list[tuple[bool, bool, int, int]] = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        seen.append((attn_mask is not None, is_causal, q.shape[-2], k.shape[-2]))
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return seen


def _forward(model, arch: str, t: int, src_pad: torch.Tensor | None = None) -> None:
    ids = torch.randint(1, 20, (2, t))
    if arch == "decoder":
        model(ids)
    else:
        model(ids, ids, src_pad)


@pytest.mark.parametrize(
    ("arch", "padded"),
    # decoder-only batches are right-padded and never carry a padding mask
    [("decoder", False), ("encoder_decoder", False), ("encoder_decoder", True)],
)
@pytest.mark.parametrize("pos", sorted(POSITIONAL))
def test_the_predicted_calls_are_the_ones_the_model_makes(monkeypatch, pos, arch, padded):
    # The mask / is_causal of every SDPA call, per attention role, as attention_calls
    # says: no mask (flash-eligible) unless a positional bias or padding needs one.
    _skip_undefined(pos, arch)
    cfg = ModelConfig(**SMALL, pos_encoding=pos, arch=arch)
    seen = _spy_sdpa(monkeypatch)
    src_pad = torch.zeros(2, 12, dtype=torch.bool)
    src_pad[0, -3:] = True
    _forward(build_model(cfg), arch, 12, src_pad if padded else None)
    expected = [
        (bool(c.mask), c.is_causal, c.t_q, c.t_k) for c in attention_calls(cfg, 12, padded=padded)
    ]
    if arch == "decoder":
        assert set(seen) == set(expected) and len(seen) == cfg.n_layers
    else:  # the encoder's layers, then each decoder layer's self- and cross-attention
        assert seen == [expected[0]] * cfg.encoder_layers + expected[1:] * cfg.n_layers


def test_only_alibi_t5_and_fire_add_a_bias_to_the_scores():
    assert {p for p in POSITIONAL if has_additive_bias(p)} == {"alibi", "t5", "fire"}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("pos", sorted(POSITIONAL))
@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_on_cpu_the_prediction_is_what_pytorch_selects(pos, arch, dropout, dtype):
    _skip_undefined(pos, arch)
    cfg = ModelConfig(**SMALL, pos_encoding=pos, arch=arch, dropout=dropout)
    for padded in (False, True):
        for call in attention_calls(cfg, 12, padded=padded):
            predicted, _ = predict_kernel(call, "cpu", dtype)
            assert predicted == selected_kernel(call, torch.device("cpu"), dtype), call


def test_a_pytorch_without_the_private_kernel_query_records_unknown(monkeypatch):
    (call, *_) = attention_calls(ModelConfig(**SMALL), 12, padded=False)
    monkeypatch.delattr(torch, "_fused_sdp_choice")
    assert selected_kernel(call, torch.device("cpu"), torch.float32) == "unknown"


def _kernels(cfg: ModelConfig, dtype=torch.bfloat16, capability=(8, 0), padded=False):
    return {
        c.role: predict_kernel(c, "cuda", dtype, capability=capability)
        for c in attention_calls(cfg, 64, padded=padded)
    }


@pytest.mark.parametrize("pos", ["rope", "sinusoidal", "learned", "nope"])
def test_on_an_ampere_gpu_in_bf16_variants_without_a_bias_get_flash(pos):
    assert _kernels(ModelConfig(**SMALL, pos_encoding=pos)) == {"self": ("flash", "")}


@pytest.mark.parametrize("pos", ["alibi", "t5", "fire"])
def test_alibi_t5_and_fire_take_the_additive_bias_path_of_the_efficient_kernel(pos):
    kernel, why = _kernels(ModelConfig(**SMALL, pos_encoding=pos))["self"]
    assert kernel == "efficient" and why == f"not flash: an additive mask ({pos} bias)"


def test_encoder_decoder_layers_leave_flash_only_for_a_bias_or_source_padding():
    cfg = ModelConfig(**SMALL, arch="encoder_decoder", pos_encoding="rope")
    assert {r: k for r, (k, _) in _kernels(cfg).items()} == {
        "encoder self": "flash",
        "decoder self": "flash",
        "cross": "flash",
    }
    assert {r: k for r, (k, _) in _kernels(cfg, padded=True).items()} == {
        "encoder self": "efficient",
        "decoder self": "flash",
        "cross": "efficient",
    }
    alibi = ModelConfig(**SMALL, arch="encoder_decoder", pos_encoding="alibi")
    assert _kernels(alibi)["cross"] == ("flash", "")  # relative biases are on self-attention only


@pytest.mark.parametrize(
    ("pos", "dtype", "capability", "head_dim", "expected"),
    [
        ("rope", torch.float32, (8, 0), 8, "efficient"),  # flash is 16-bit only
        ("rope", torch.float16, (7, 5), 8, "efficient"),  # T4: no flash before sm80
        ("rope", torch.bfloat16, (7, 0), 8, "math"),  # V100: no bf16 in either kernel
        ("rope", torch.float32, (7, 0), 8, "efficient"),
        ("rope", torch.bfloat16, (9, 0), 512, "efficient"),  # flash stops at head dim 256
        ("rope", torch.bfloat16, (8, 0), 12, "flash"),  # flash pads any head dim <= 256
        ("alibi", torch.bfloat16, (8, 0), 12, "math"),  # efficient: 16-bit needs a multiple of 8
        ("alibi", torch.float32, (8, 0), 12, "efficient"),  # fp32: a multiple of 4
    ],
)
def test_the_cuda_kernel_follows_dtype_capability_and_head_dim(
    pos, dtype, capability, head_dim, expected
):
    cfg = ModelConfig(d_model=head_dim * 2, n_heads=2, n_layers=1, vocab_size=20, pos_encoding=pos)
    (call,) = attention_calls(cfg, 64)
    assert call.head_dim == head_dim
    kernel, why = predict_kernel(call, "cuda", dtype, capability=capability)
    assert kernel == expected, why
    assert (why == "") == (expected == "flash")


def test_training_with_a_head_dim_of_200_on_an_sm86_gpu_is_refused_flash():
    cfg = ModelConfig(d_model=400, n_heads=2, n_layers=1, vocab_size=20)
    (call,) = attention_calls(cfg, 64)
    assert predict_kernel(call, "cuda", torch.bfloat16, capability=(8, 6))[0] == "efficient"
    assert predict_kernel(call, "cuda", torch.bfloat16, capability=(8, 0))[0] == "flash"
    eval_call = attention_calls(cfg, 64, training=False)[0]
    kernel, _ = predict_kernel(eval_call, "cuda", torch.bfloat16, capability=(8, 6), training=False)
    assert kernel == "flash"


def test_the_summary_names_the_mask_and_the_padding_case():
    cpu = torch.device("cpu")
    alibi = ModelConfig(**SMALL, pos_encoding="alibi")
    assert kernel_summary(alibi, 12, cpu, torch.float32) == {"self": "flash (alibi bias)"}
    dropout = ModelConfig(**SMALL, dropout=0.1)
    assert kernel_summary(dropout, 12, cpu, torch.float32) == {"self": "math"}


def test_a_run_records_its_sdpa_kernels_in_the_manifest(tiny):
    from bench.training.prepare import prepare
    from bench.training.rundir import open_run

    prep = prepare(tiny(**{"model.pos_encoding": "t5"}))
    opened = open_run(prep, None, "bench train")
    manifest = json.loads((opened.run_dir / "manifest.json").read_text())
    expected = kernel_summary(
        prep.cfg.model, prep.cfg.task.seq_len, torch.device("cpu"), torch.float32
    )
    assert manifest["sdpa_kernels"] == expected
    assert expected["self"].endswith("(t5 bias)")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("pos", sorted(POSITIONAL))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_on_this_gpu_the_prediction_is_what_pytorch_selects(pos, dtype):
    # Where a GPU is lent: the CUDA rules above against PyTorch's own choice
    # (cuDNN attention is excluded, as under bench's default deterministic mode).
    cuda = torch.device("cuda")
    capability = torch.cuda.get_device_capability(cuda)
    torch.backends.cuda.enable_cudnn_sdp(False)
    try:
        for arch in ARCHS:
            if pos in DECODER_ONLY and arch != "decoder":
                continue
            cfg = ModelConfig(**SMALL, pos_encoding=pos, arch=arch)
            for call in attention_calls(cfg, 64, padded=arch != "decoder"):
                kernel, why = predict_kernel(call, "cuda", dtype, capability=capability)
                assert kernel == selected_kernel(call, cuda, dtype), (call, why)
    finally:
        torch.backends.cuda.enable_cudnn_sdp(True)

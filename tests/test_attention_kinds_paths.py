"""model.attention kinds and model.attn_window through every path that reads attention:
encoder-decoder, GQA, SDPA kernels (CPU and the predicted CUDA kernel), FLOP counting,
µP, attention recording and figures, config errors, checkpoint resume and a sweep."""

from __future__ import annotations

import json
import math
import signal

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY

from bench.config import ConfigError, ModelConfig, TrainConfig, build_run_config
from bench.diagnostics.attention.plot import AttentionMaps, draw_grid
from bench.diagnostics.attention.stats import attention_stats, record_maps
from bench.diagnostics.batches import batch_tokens
from bench.diagnostics.throughput.flops import measured_flops_per_batch, model_flops_per_token
from bench.model import build_model
from bench.model.sdpa_kernels import (
    attention_calls,
    kernel_summary,
    predict_kernel,
    selected_kernel,
)
from bench.training.optimizer import build_optimizer

SMALL = {"d_model": 32, "n_heads": 4, "n_layers": 2, "max_len": 32, "vocab_size": 20}
KINDS = ["softmax", "gated", "gated_headwise", "diff", "sigmoid"]


def _batch(cfg: ModelConfig, b: int = 2, t: int = 12) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    if cfg.arch == "decoder":
        return {"input_ids": torch.randint(1, cfg.vocab_size, (b, t))}
    return {
        "src": torch.randint(1, cfg.vocab_size, (b, t + 2)),
        "tgt_in": torch.randint(1, cfg.vocab_size, (b, t)),
    }


# ------------------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"model.attention": "diff", "model.n_heads": 3, "model.d_model": 24}, "must both be even"),
        ({"model.attention": "diff", "model.n_kv_heads": 1}, "must both be even"),
        ({"model.sigmoid_bias": -3.0}, "read only by model.attention=sigmoid"),
        ({"model.attn_window": 0}, "model.attn_window"),
        ({"model.attention": "cosine"}, "model.attention"),
    ],
)
def test_a_bad_attention_setting_is_one_line_naming_it(overrides, says):
    with pytest.raises(ConfigError) as e:
        build_run_config(overrides=overrides)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_bench_train_refuses_a_bad_attention_kind_with_exit_2(tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "bench", "train", "model.attention=diff", "model.n_kv_heads=1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "must both be even" in out.stderr


# ---------------------------------------------------------------- every arch, GQA, window


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("axes", [{}, {"n_kv_heads": 2}, {"arch": "encoder_decoder"}])
def test_every_kind_trains_in_every_arch_and_with_gqa(kind, axes):
    cfg = ModelConfig(**SMALL, attention=kind, attn_window=4, **axes)
    torch.manual_seed(0)
    model = build_model(cfg)
    batch = _batch(cfg)
    out = model(*batch.values())
    out.float().pow(2).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    kinds = {type(m).kind for m in model.modules() if hasattr(m, "kind")}
    assert kinds == {kind}  # the encoder, decoder and cross-attention layers alike


def test_diff_layers_know_their_depth_in_each_stack():
    model = build_model(ModelConfig(**SMALL, attention="diff", arch="encoder_decoder"))
    enc = [b.attn.layer for b in model.encoder.blocks]
    dec = [(b.attn.layer, b.cross_attn.layer) for b in model.decoder.blocks]
    assert enc == [0, 1] and dec == [(0, 0), (1, 1)]


# ----------------------------------------------------------------------------- kernels


def _spy_sdpa(monkeypatch) -> list[tuple[bool, bool, int]]:
    seen: list[tuple[bool, bool, int]] = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        seen.append((attn_mask is not None, is_causal, v.shape[-1]))
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    return seen


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("window", [None, 4, 12])
@pytest.mark.parametrize("arch", ["decoder", "encoder_decoder"])
def test_the_predicted_sdpa_calls_are_the_ones_each_kind_makes(monkeypatch, kind, window, arch):
    cfg = ModelConfig(**SMALL, attention=kind, attn_window=window, arch=arch)
    seen = _spy_sdpa(monkeypatch)
    model = build_model(cfg)
    batch = _batch(cfg, t=12)
    src_len = batch["src"].shape[1] if arch != "decoder" else None
    model(*batch.values())
    calls = attention_calls(cfg, 12, src_len=src_len)
    expected = {(bool(c.mask), c.is_causal, c.v_dim) for c in calls if not c.no_sdpa}
    assert set(seen) == expected
    if kind == "sigmoid":
        assert seen == [] and all(c.no_sdpa for c in calls)
    if window == 4:  # shorter than the sequence: a mask, no fast causal path
        assert all(c.mask.startswith("sliding window") for c in calls if c.role != "cross")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("window", [None, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_on_cpu_the_predicted_kernel_is_what_pytorch_selects(kind, window, dtype):
    cfg = ModelConfig(**SMALL, attention=kind, attn_window=window, arch="encoder_decoder")
    for padded in (False, True):
        for call in attention_calls(cfg, 12, padded=padded):
            predicted, _ = predict_kernel(call, "cpu", dtype)
            assert predicted == selected_kernel(call, torch.device("cpu"), dtype), call


def test_the_predicted_cuda_kernel_of_each_kind():
    def kernel(**axes):
        (call,) = attention_calls(ModelConfig(**{**SMALL, "d_model": 64}, **axes), 64)
        return predict_kernel(call, "cuda", torch.bfloat16, capability=(8, 0))

    assert kernel(attention="gated") == ("flash", "")  # the gate acts after SDPA
    assert kernel(attention="diff") == (
        "efficient",
        "not flash: value head dim 32 != query head dim 16",
    )
    assert kernel(attention="sigmoid") == ("none", "sigmoid attention calls no SDPA kernel")
    assert kernel(attn_window=16) == ("efficient", "not flash: an additive mask (sliding window)")
    assert kernel(attn_window=64) == ("flash", "")  # the window covers the sequence


def test_the_manifest_summary_names_each_kinds_kernel():
    cpu = torch.device("cpu")
    summary = lambda **a: kernel_summary(ModelConfig(**SMALL, **a), 12, cpu, torch.float32)  # noqa: E731
    assert summary(attention="sigmoid") == {"self": "none"}
    assert summary(attention="diff") == {"self": "math"}
    assert summary(attn_window=4) == {"self": "flash (sliding window)"}


# ------------------------------------------------------------------------------- FLOPs


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "axes", [{}, {"n_kv_heads": 2}, {"arch": "encoder_decoder"}, {"attn_window": 4}]
)
def test_analytic_flops_of_each_kind_agree_with_the_flop_counter(kind, axes):
    cfg = ModelConfig(**{**SMALL, "d_model": 64}, attention=kind, **axes)
    batch = _batch(cfg, t=16)
    src = batch["src"].shape[1] if "src" in batch else None
    analytic = model_flops_per_token(cfg, 16, src_len=src) * batch_tokens(batch)
    assert measured_flops_per_batch(cfg, batch) == pytest.approx(analytic, rel=1e-3)


# ----------------------------------------------------------------------------------- µP


BASE, WIDE = 32, 128


@pytest.mark.parametrize("kind", ["gated", "gated_headwise", "diff", "sigmoid"])
def test_mup_gives_each_kinds_new_parameters_tensor_programs_rules(kind):
    # Table 3 (Adam): a weight with two growing dimensions is hidden (LR / fan_in ratio,
    # decay x the ratio); vectors (lambda, norm gains) and a weight with one growing
    # dimension keep the base LR.
    cfg = ModelConfig(d_model=WIDE, n_heads=4, n_layers=2, vocab_size=64, attention=kind)
    model = build_model(cfg, "mup", BASE)
    opt, _ = build_optimizer(model, TrainConfig(lr=1e-2, weight_decay=0.1, parameterization="mup"))
    lr = {id(p): g["initial_lr"] for g in opt.param_groups for p in g["params"]}
    for name, p in model.named_parameters():
        if name.endswith("gate.weight"):
            hidden = kind == "gated"  # elementwise: [H hd, d]; headwise: [H, d], H fixed
            assert lr[id(p)] == pytest.approx(1e-2 * BASE / WIDE if hidden else 1e-2), name
        if "lambda_" in name or "subln" in name:
            assert lr[id(p)] == 1e-2, name
    x = torch.randint(0, 64, (2, 8))
    loss = model(x).float().logsumexp(-1).mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(model(x)).all()


def test_mup_init_of_the_elementwise_gate_is_a_hidden_weights():
    # var ∝ 1/fan_in: the xavier std at the base shape x sqrt(base fan_in / fan_in)
    stds = []
    for width in (BASE, WIDE):
        cfg = ModelConfig(d_model=width, n_heads=4, n_layers=1, vocab_size=64, attention="gated")
        torch.manual_seed(0)
        w = build_model(cfg, "mup", BASE).blocks[0].attn.gate.weight
        stds.append(w.detach().double().pow(2).mean().sqrt().item())
    base_std = math.sqrt(2.0 / (BASE + BASE))
    assert stds[0] == pytest.approx(base_std, rel=0.1)
    assert stds[1] == pytest.approx(base_std * math.sqrt(BASE / WIDE), rel=0.1)


# ---------------------------------------------------------------- recording and figures


def _recorded(kind: str, **axes):
    cfg = ModelConfig(**SMALL, attention=kind, **axes)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    batch = _batch(cfg)
    stats = attention_stats(model, lambda: model(*batch.values()))
    maps = record_maps(model, batch, 64)
    return cfg, model, batch, stats, maps


@pytest.mark.parametrize("kind", KINDS)
def test_the_recorded_map_is_the_one_that_weights_the_values(kind):
    # Recompute each layer's output from the recorded map and the values: it must equal
    # the layer's own output (before its output projection).
    cfg, model, batch, _, maps = _recorded(kind)
    layer = model.blocks[0].attn
    x = model.tok_embed(batch["input_ids"]) * math.sqrt(cfg.d_model)
    x = model.pos.embed(x)
    h = model.blocks[0].attn_res.norm(x) if hasattr(model.blocks[0].attn_res, "norm") else x
    seen = {}
    layer.register_forward_hook(lambda m, a, out: seen.setdefault("x", a[0]))
    with torch.no_grad():
        model(*batch.values())
        xin = seen["x"]
        from bench.model.attention import attention_inputs

        inputs = attention_inputs(12, 12, causal=True, device=xin.device)
        _, _, v, _ = layer.project(xin, inputs)
        w = torch.from_numpy(maps["maps"][0].astype(np.float32))  # [B, H', T, S]
        if kind == "diff":
            B, KV, S, hd = v.shape
            v = v.reshape(B, KV // 2, 2, S, hd).transpose(2, 3).reshape(B, KV // 2, S, 2 * hd)
            y = layer.subln(w @ v) * (1 - layer.lambda_init)
        else:
            y = w @ v
        expected = layer.attend(*layer.project(xin, inputs)[:3], None, True)
    del h
    torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-5)
    assert maps["maps"][0].shape[1] == (cfg.n_heads // 2 if kind == "diff" else cfg.n_heads)


@pytest.mark.parametrize("kind", KINDS)
def test_entropy_is_measured_only_for_maps_that_are_distributions(kind):
    _, _, _, stats, maps = _recorded(kind)
    w = maps["maps"][0]
    if kind in ("softmax", "gated", "gated_headwise"):
        assert set(stats.entropy) == {"layer_0", "layer_1"}
        np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    else:  # sigmoid rows do not sum to 1; a differential map has negative weights
        assert stats.entropy == {}
        assert not np.allclose(w.sum(-1), 1.0, rtol=1e-3)
    assert set(stats.first_mass) == {"layer_0", "layer_1"}  # defined for every map


def test_a_differential_map_is_drawn_on_a_signed_scale():
    _, _, _, _, rec = _recorded("diff")
    assert (
        min(float(m.min()) for m in rec["maps"]) < 0
    )  # lambda_init 0.2: A1 - 0.2 A2 < 0 somewhere
    maps = AttentionMaps(
        [0],
        rec["layers"],
        [m[None] for m in rec["maps"]],
        rec["queries"],
        rec["keys"],
        rec["query_tokens"],
        rec["key_tokens"],
    )
    fig = draw_grid(maps, 0, 0)
    image = fig.axes[0].images[0]
    assert image.get_clim() == (-1.0, 1.0)
    softmax = _recorded("softmax")[4]
    soft = AttentionMaps(
        [0],
        softmax["layers"],
        [m[None] for m in softmax["maps"]],
        softmax["queries"],
        softmax["keys"],
        softmax["query_tokens"],
        softmax["key_tokens"],
    )
    assert draw_grid(soft, 0, 0).axes[0].images[0].get_clim() == (0.0, 1.0)


# ------------------------------------------------------------------ resume and a sweep


@pytest.mark.parametrize("kind", ["diff", "sigmoid"])  # new parameters; no SDPA
def test_a_preempted_run_of_each_kind_resumes_exactly(tmp_path, kind):
    from test_preemption import SignalAt

    from bench.training.preemption import PREEMPTION, Preempted
    from bench.training.run import train_run

    overrides = {**TINY, "model.n_heads": 4, "model.attention": kind, "model.attn_window": 4}
    overrides.update({"train.max_steps": 16, "train.val_every": 8})
    clean = train_run(
        build_run_config(overrides={**overrides, "tracking.run_dir": str(tmp_path / "a")})
    )
    run_dir = tmp_path / "b"
    cfg = build_run_config(overrides={**overrides, "tracking.run_dir": str(run_dir)})
    old = signal.getsignal(signal.SIGTERM)
    PREEMPTION.install()
    try:
        with pytest.raises(Preempted):
            train_run(cfg, [SignalAt(6, signal.SIGTERM)])
    finally:
        PREEMPTION.reset()
        PREEMPTION.installed = False
        signal.signal(signal.SIGTERM, old)
    resumed = train_run(cfg, resume=run_dir)
    for key in ("val/loss", "train/loss"):
        assert resumed.metrics[key] == clean.metrics[key], key
    manifest = json.loads((run_dir / "manifest.json").read_text())
    expected = {
        "diff": "math (sliding window)",  # values twice the query width
        "sigmoid": "none",  # no SDPA call
    }
    assert manifest["sdpa_kernels"] == {"self": expected[kind]}

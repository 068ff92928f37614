"""Learnable attention-sink tokens (``model.sink_tokens``; Xiao et al. 2023, Sec. 3.3).

The independent implementation is the paper's own description: a sink token is an extra
vocabulary id prepended to every training sample. A model with ``k`` sinks must compute,
on the same weights, what the plain model with ``k`` more vocabulary ids (their embedding
rows the sink vectors) computes on every sequence with those ids prepended, its outputs
at the sink positions cut off: forward and every gradient, in float64. Then the paths:
the window, generation, config errors, SDPA calls and kernels, FLOPs, µP, the attention
diagnostics and maps, `bench attention`, and an exact resume after preemption.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import TINY

from bench.config import ConfigError, ModelConfig, TrainConfig, build_run_config
from bench.diagnostics.attention.plot import SINK_TOKEN, AttentionMaps, draw_attention, draw_grid
from bench.diagnostics.attention.recorder import AttentionRecorder
from bench.diagnostics.attention.stats import (
    FIRST_MASS_FROM,
    attention_entropy,
    attention_modules,
    attention_stats,
    first_key_mass,
    record_maps,
)
from bench.diagnostics.batches import batch_tokens
from bench.diagnostics.throughput.flops import measured_flops_per_batch, model_flops_per_token
from bench.model import build_model
from bench.model.attention import attention_inputs
from bench.model.sdpa_kernels import (
    attention_calls,
    kernel_summary,
    predict_kernel,
    selected_kernel,
)
from bench.training.optimizer import build_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")

V = 20
SMALL = {"d_model": 32, "n_heads": 4, "n_layers": 2, "max_len": 32, "vocab_size": V}


def _pair(k: int, dtype: torch.dtype = torch.float64, **axes):
    """``(ours, ref)``: ``ours`` has ``k`` sink tokens; ``ref`` has none and ``V + k``
    vocabulary ids, holding the same weights, ids ``V..V+k-1`` embedded as the sinks.
    ``axes["ref"]`` overrides keys of ``ref``'s config only."""
    ref_only = axes.pop("ref", {})
    torch.manual_seed(0)
    ours = build_model(ModelConfig(**SMALL, sink_tokens=k, **axes)).to(dtype)
    with torch.no_grad():  # non-trivial values everywhere (biases, gains, the sinks)
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref = build_model(ModelConfig(**{**SMALL, "vocab_size": V + k, **axes, **ref_only})).to(dtype)
    state = dict(ours.state_dict())
    sinks = state.pop("sinks.embed.weight")
    big = torch.cat([state["tok_embed.weight"], sinks])
    state["tok_embed.weight"] = big
    tied = ours.cfg.tie_embeddings
    state["lm_head.weight"] = big if tied else torch.cat([state["lm_head.weight"], 0 * sinks])
    ref.load_state_dict(state)
    return ours, ref


def _with_sinks(ids: torch.Tensor, k: int) -> torch.Tensor:
    return torch.cat([torch.arange(V, V + k).expand(ids.shape[0], k), ids], dim=1)


def _grads(model, out, w):
    named = dict(model.named_parameters())
    return dict(zip(named, torch.autograd.grad((out * w).sum(), list(named.values())), strict=True))


@pytest.mark.parametrize(
    ("k", "axes"),
    [
        (1, {}),  # the paper's one sink; learned positions, tied head
        (2, {"pos_encoding": "rope", "n_kv_heads": 2, "tie_embeddings": False}),
        (1, {"pos_encoding": "alibi", "embed_scale": "norm", "qk_norm": True}),
        (3, {"pos_encoding": "t5", "attention": "gated"}),
        (1, {"pos_encoding": "fire", "attention": "sigmoid", "norm_placement": "post"}),
        (1, {"pos_encoding": "sinusoidal", "attention": "diff", "block": "parallel"}),
        # positions past the training length: RoPE's L counts the sink
        (
            1,
            {
                "pos_encoding": "rope",
                "rope_scaling": "yarn",
                "rope_original_len": 6,
                "ref": {"rope_original_len": 7},
            },
        ),
        (2, {"arch": "encoder_decoder", "pos_encoding": "rope"}),
    ],
    ids=["learned", "rope-gqa", "alibi-norm", "t5-gated", "fire-sig", "sin-diff", "yarn", "encdec"],
)
def test_sink_tokens_equal_extra_vocabulary_ids_prepended_to_every_sequence(k, axes):
    # float64, but FIRE, whose bias is float32 (its positions are float32 aranges)
    fire = axes.get("pos_encoding") == "fire"
    ours, ref = _pair(k, torch.float32 if fire else torch.float64, **axes)
    tol = {"rtol": 1e-5, "atol": 1e-6} if fire else {"rtol": 1e-9, "atol": 1e-10}
    torch.manual_seed(1)
    ids = torch.randint(4, V, (3, 12))
    pad = torch.zeros(3, 12, dtype=torch.bool)
    pad[1, 9:] = True  # right padding
    if ours.cfg.arch == "decoder":
        out = ours(ids, pad)
        theirs = ref(_with_sinks(ids, k), torch.cat([torch.zeros(3, k, dtype=torch.bool), pad], 1))
    else:
        src = torch.randint(4, V, (3, 10))
        out = ours(src, ids, pad[:, :10])
        theirs = ref(src, _with_sinks(ids, k), pad[:, :10])
    theirs = theirs[:, k:, :V]
    assert out.shape == (3, 12, V)
    torch.testing.assert_close(out, theirs, **tol)
    w = torch.randn_like(out)
    g_ours, g_ref = _grads(ours, out, w), _grads(ref, theirs, w)
    assert g_ours["sinks.embed.weight"].abs().sum() > 0  # the sinks learn
    for name, g in g_ours.items():
        if name == "sinks.embed.weight":
            expected = g_ref["tok_embed.weight"][V:]
        elif name in ("tok_embed.weight", "lm_head.weight"):
            expected = g_ref[name][:V]
        else:
            expected = g_ref[name]
        torch.testing.assert_close(g, expected, **tol, msg=name)


def test_no_sink_tokens_builds_the_model_it_always_built():
    torch.manual_seed(0)
    plain = build_model(ModelConfig(**SMALL))
    assert not any("sink" in name for name, _ in plain.named_parameters())
    assert plain.sinks is None and plain.sink_inputs() is None


def test_a_window_hides_old_tokens_but_never_the_sinks():
    t, k, w = 9, 2, 3
    inputs = attention_inputs(t, t, causal=True, device=torch.device("cpu"), window=w, sink_keys=k)
    allowed = torch.isfinite(inputs.mask[0, 0])
    expected = torch.tensor([[s <= q and (q - s < w or s < k) for s in range(t)] for q in range(t)])
    assert torch.equal(allowed, expected)
    # in a model: the last token's output moves with the sink, not with a token out of reach
    model = build_model(ModelConfig(**SMALL, sink_tokens=1, attn_window=w)).eval()
    ids = torch.randint(4, V, (1, 10))
    with torch.no_grad():
        before = model(ids)[0, -1]
        far = ids.clone()
        far[0, 0] = (ids[0, 0] + 1 - 4) % (V - 4) + 4  # 9 tokens back: outside the window
        assert torch.equal(model(far)[0, -1], before)
        model.sinks.embed.weight.add_(torch.randn_like(model.sinks.embed.weight))
        assert not torch.allclose(model(ids)[0, -1], before)


def test_greedy_generation_with_sinks_equals_argmax_of_teacher_forcing():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**SMALL, sink_tokens=1, pos_encoding="rope"))
    prompt = torch.randint(4, V, (2, 4))
    out = model.generate(prompt, max_new_tokens=5)
    assert out.shape == (2, 9) and torch.equal(out[:, :4], prompt)
    with torch.no_grad():
        assert torch.equal(model.eval()(out)[:, 3:-1].argmax(-1), out[:, 4:])
    seq2seq = build_model(ModelConfig(**SMALL, sink_tokens=2, arch="encoder_decoder")).eval()
    src = torch.randint(4, V, (2, 6))
    out = seq2seq.generate(src, max_new_tokens=4, bos_id=1)
    tgt_in = torch.cat([torch.ones(2, 1, dtype=torch.long), out[:, :-1]], 1)
    with torch.no_grad():
        assert torch.equal(seq2seq(src, tgt_in).argmax(-1), out)


# ----------------------------------------------------------------------------- config


def test_sinks_that_leave_no_learned_position_are_one_line_and_bench_train_exits_2(tmp_path):
    with pytest.raises(ConfigError) as e:
        build_run_config(overrides={"model.sink_tokens": 32, "model.max_len": 32})
    assert "model.sink_tokens=32" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match=r"model\.sink_tokens"):
        build_run_config(overrides={"model.sink_tokens": -1})
    build_run_config(overrides={"model.sink_tokens": 32, "model.pos_encoding": "rope"})
    out = subprocess.run(
        [sys.executable, "-m", "bench", "train", "model.sink_tokens=40", "model.max_len=40"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "leaves none of model.max_len=40" in out.stderr


def test_a_task_too_long_for_the_table_once_the_sinks_take_their_positions_is_refused(tiny):
    from bench.training.prepare import prepare

    needed = prepare(tiny()).datamodule.max_positions
    assert prepare(tiny(**{"model.max_len": needed}))  # fits without sinks
    with pytest.raises(ConfigError) as e:
        prepare(tiny(**{"model.max_len": needed, "model.sink_tokens": 1}))
    assert "+ model.sink_tokens=1" in str(e.value) and f">= {needed + 1}" in str(e.value)


# ------------------------------------------------------------------ SDPA, FLOPs, µP


def test_the_sdpa_calls_and_kernels_count_the_sink_positions(monkeypatch):
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        seen.append((q.shape[-2], k.shape[-2], attn_mask is not None, is_causal))
        return real(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    for axes in ({}, {"attn_window": 4}, {"arch": "encoder_decoder"}):
        cfg = ModelConfig(**SMALL, sink_tokens=2, **axes)
        seen.clear()
        ids = torch.randint(4, V, (2, 12))
        build_model(cfg)(*((ids,) if cfg.arch == "decoder" else (ids[:, :10], ids)))
        calls = attention_calls(cfg, 12, src_len=10 if cfg.arch != "decoder" else None)
        assert set(seen) == {(c.t_q, c.t_k, bool(c.mask), c.is_causal) for c in calls}
        assert calls[-1].t_q == 14  # 2 sinks + 12 tokens
        for call in calls:
            for dtype in (torch.float32, torch.bfloat16):
                predicted, _ = predict_kernel(call, "cpu", dtype)
                assert predicted == selected_kernel(call, torch.device("cpu"), dtype), call

    def cuda(**axes):
        (call,) = attention_calls(ModelConfig(**{**SMALL, "d_model": 64}, **axes), 63)
        return predict_kernel(call, "cuda", torch.bfloat16, capability=(8, 0))

    assert cuda(sink_tokens=1) == ("flash", "")  # causality shows the sinks: no mask
    assert cuda(sink_tokens=1, attn_window=63) == (  # 64 positions: the window is a mask
        "efficient",
        "not flash: an additive mask (sliding window)",
    )
    assert cuda(attn_window=63) == ("flash", "")  # without the sink it covers the sequence
    cpu = torch.device("cpu")
    assert kernel_summary(ModelConfig(**SMALL, sink_tokens=1), 12, cpu, torch.float32) == {
        "self": "flash"
    }


def test_analytic_flops_with_sinks_agree_with_the_flop_counter():
    for axes in (
        {"sink_tokens": 2},
        {"sink_tokens": 1, "pos_encoding": "fire", "n_kv_heads": 2},
        {"sink_tokens": 1, "attn_window": 4, "attention": "diff"},
        {"sink_tokens": 2, "arch": "encoder_decoder"},
    ):
        cfg = ModelConfig(**{**SMALL, "d_model": 64}, **axes)
        ids = torch.randint(4, V, (2, 16))
        batch = {"input_ids": ids} if cfg.arch == "decoder" else {"src": ids[:, :10], "tgt_in": ids}
        src = 10 if cfg.arch != "decoder" else None
        analytic = model_flops_per_token(cfg, 16, src_len=src, batch_size=2) * batch_tokens(batch)
        assert measured_flops_per_batch(cfg, batch) == pytest.approx(analytic, rel=1e-3), axes
        plain = model_flops_per_token(cfg.model_copy(update={"sink_tokens": 0}), 16, src_len=src)
        assert model_flops_per_token(cfg, 16, src_len=src) > plain  # work without tokens


def test_the_sink_vectors_are_embeddings_to_init_the_optimizer_and_mup():
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=128, n_heads=4, vocab_size=64, sink_tokens=4))
    sinks, tokens = model.sinks.embed.weight, model.tok_embed.weight
    assert sinks.std().item() == pytest.approx(tokens.std().item(), rel=0.15)  # xavier's d^-1/2
    mup = build_model(ModelConfig(d_model=128, n_heads=4, vocab_size=64, sink_tokens=4), "mup", 32)
    opt, _ = build_optimizer(mup, TrainConfig(lr=1e-2, weight_decay=0.1, parameterization="mup"))
    group = next(
        g for g in opt.param_groups if any(p is mup.sinks.embed.weight for p in g["params"])
    )
    assert group["initial_lr"] == 1e-2 and group["weight_decay"] == 0.0  # vector-like, no decay
    assert mup.sinks.embed.weight.std().item() == pytest.approx(32**-0.5, rel=0.15)  # base std


# ------------------------------------------------------------- diagnostics and maps


def test_first_key_mass_reads_the_sinks_together():
    t, k = 8, 2
    keys = torch.arange(k + 1, k + t + 1)  # token query t sees k sinks and t + 1 tokens
    uniform = torch.zeros(1, 1, t, k + t)
    for q in range(t):
        uniform[0, 0, q, : k + q + 1] = 1 / (k + q + 1)
    mass, expect = first_key_mass(uniform, keys[None, None], sinks=k)
    late = range(math.ceil(FIRST_MASS_FROM * t), t)
    assert expect.item() == pytest.approx(np.mean([k / (k + q + 1) for q in late]))
    assert mass.item() == pytest.approx(expect.item())
    sink_head = torch.zeros(1, 1, t, k + t)
    sink_head[..., 0], sink_head[..., 1] = 0.75, 0.25  # all of it on the sinks, split
    assert first_key_mass(sink_head, keys[None, None], sinks=k)[0].item() == pytest.approx(1.0)


def _recorded(model, batch):
    with torch.no_grad(), AttentionRecorder(attention_modules(model.eval())) as rec:
        model(*batch.values())
    return rec.records


def test_attention_stats_and_maps_read_the_token_queries_and_keep_the_sink_keys():
    k, t = 2, 12
    ours, ref = _pair(k, torch.float32)
    ids = torch.randint(4, V, (2, t))
    stats = attention_stats(ours, lambda: ours(ids))
    raw = _recorded(ours, {"input_ids": ids})
    for layer in ("layer_0", "layer_1"):
        full = raw[layer]
        assert (full.sink_queries, full.sink_keys) == (k, k)
        probs = full.probs[:, :, k:]  # the token queries, by hand
        late = range(math.ceil(FIRST_MASS_FROM * t), t)
        mass = probs[:, :, list(late), :k].sum(-1).mean().item()
        assert stats.first_mass[layer] == pytest.approx(mass, rel=1e-5)
        assert stats.first_mass_uniform[layer] == pytest.approx(
            np.mean([k / (k + q + 1) for q in late]), rel=1e-5
        )
        torch.testing.assert_close(stats.entropy[layer], attention_entropy(probs))
    # the recorded maps: ours are the reference's with its sink query rows cut off
    maps = record_maps(ours, {"input_ids": ids}, 64)
    theirs = record_maps(ref, {"input_ids": _with_sinks(ids, k)}, 64)
    for j in range(2):
        assert maps["maps"][j].shape == (2, 4, t, t + k)
        np.testing.assert_allclose(maps["maps"][j], theirs["maps"][j][:, :, k:], atol=1e-6)
        assert (maps["key_tokens"][j][:, :k] == SINK_TOKEN).all()
        assert np.array_equal(maps["key_tokens"][j][:, k:], ids.numpy())
        assert list(maps["keys"][j]) == [t + k] * 2 and list(maps["queries"][j]) == [t] * 2
    drawn = AttentionMaps(
        [0],
        maps["layers"],
        [m[None] for m in maps["maps"]],
        maps["queries"],
        maps["keys"],
        maps["query_tokens"],
        maps["key_tokens"],
    )
    labels = [x.get_text() for x in draw_grid(drawn, 0, 0).axes[0].get_xticklabels()]
    assert labels[:k] == ["sink"] * k and labels[k:] == [str(int(i)) for i in ids[0]]


def test_a_preempted_run_with_a_sink_resumes_exactly_and_its_maps_are_drawn(tmp_path):
    from test_preemption import SignalAt

    from bench.training.preemption import PREEMPTION, Preempted
    from bench.training.run import train_run

    overrides = {**TINY, "model.sink_tokens": 1, "model.attn_window": 4}
    overrides.update({"train.max_steps": 12, "train.val_every": 6})
    clean = train_run(
        build_run_config(overrides={**overrides, "tracking.run_dir": str(tmp_path / "a")})
    )
    run_dir = tmp_path / "b"
    cfg = build_run_config(overrides={**overrides, "tracking.run_dir": str(run_dir)})
    old = signal.getsignal(signal.SIGTERM)
    PREEMPTION.install()
    try:
        with pytest.raises(Preempted):
            train_run(cfg, [SignalAt(5, signal.SIGTERM)])
    finally:
        PREEMPTION.reset()
        PREEMPTION.installed = False
        signal.signal(signal.SIGTERM, old)
    resumed = train_run(cfg, resume=run_dir)
    for key in ("val/loss", "train/loss"):
        assert resumed.metrics[key] == clean.metrics[key], key
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["sdpa_kernels"] == {"self": "flash (sliding window)"}
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"cond/attn_first_mass/layer_0", "cond/attn_first_mass_ratio/layer_1"} <= set(header)
    maps = AttentionMaps.load(run_dir / "diagnostics" / "attention_maps.npz")
    assert maps.steps[-1] == 12 and (maps.key_tokens[0][:, 0] == SINK_TOKEN).all()
    png = draw_attention(run_dir, out=tmp_path / "sink.png")  # `bench attention`
    assert png.stat().st_size > 0

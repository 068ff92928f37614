"""Gradient diagnostics: norms per block/sublayer, update ratios, noise scale, attention entropy."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch import nn
from torch.utils.data import DataLoader

from bench.config import DiagnosticsConfig, ModelConfig, build_run_config
from bench.diagnostics.attention.stats import (
    attention_entropies,
    attention_entropy,
    attention_stats,
)
from bench.diagnostics.gradients.callback import GradientDiagnostics
from bench.diagnostics.gradients.noise_scale import NoiseScale, noise_scale_estimates
from bench.diagnostics.gradients.stats import first_last_ratio, grad_norms
from bench.diagnostics.grouping import Layout, classify_parameters
from bench.model import build_model
from bench.training.module import BenchModule

TINY_MODEL = {"d_model": 32, "n_layers": 3, "n_heads": 2, "max_len": 32, "vocab_size": 16}


def _tokens(b: int, t: int, vocab: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab, (b, t + 1), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}


def _backward(model: nn.Module, batch: dict[str, torch.Tensor]) -> None:
    logits = model(batch["input_ids"])
    F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten()).backward()


def _manual_norm(model: nn.Module, keep) -> float:
    sq = sum(float(p.grad.pow(2).sum()) for n, p in model.named_parameters() if keep(n))
    return math.sqrt(sq)


# ----------------------------------------------------------------------------- grouping and norms


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("blocks.0.attn.qkv.weight", ("block_0", "attn")),
        ("blocks.3.attn_res.norm.weight", ("block_3", "norm")),
        ("blocks.1.attn.q_norm.weight", ("block_1", "norm")),
        ("blocks.2.ffn.fc_in.bias", ("block_2", "ffn")),
        ("encoder.blocks.1.ffn.fc_out.weight", ("enc_block_1", "ffn")),
        ("decoder.blocks.0.cross_attn.kv_proj.weight", ("dec_block_0", "cross_attn")),
        ("tok_embed.weight", ("embed", None)),
        ("pos.table.weight", ("embed", None)),
        ("encoder.pos.table.weight", ("embed", None)),
        ("final_norm.weight", ("final_norm", None)),
        ("lm_head.weight", ("lm_head", None)),
    ],
)
def test_parameters_are_grouped_by_block_and_sublayer(name, expected):
    """By module type (attention, feed-forward, norm, embedding...), under the same names."""
    common = {**TINY_MODEL, "n_layers": 4, "qk_norm": True, "tie_embeddings": False}
    decoder = build_model(ModelConfig(**common, pos_encoding="learned"))
    encdec = build_model(ModelConfig(**common, arch="encoder_decoder", pos_encoding="t5"))
    groups = {**classify_parameters(encdec), **classify_parameters(decoder)}
    assert groups[name] == expected


def test_block_and_sublayer_norms_equal_manual_norms_of_p_grad():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_MODEL))
    _backward(model, _tokens(4, 8))
    norms = grad_norms(model)
    for i in range(3):
        prefix = f"blocks.{i}."
        assert norms[f"block_{i}"] == pytest.approx(
            _manual_norm(model, lambda n, p=prefix: n.startswith(p)), rel=1e-5
        )
        attn = _manual_norm(model, lambda n, p=prefix: n.startswith(p + "attn."))
        ffn = _manual_norm(model, lambda n, p=prefix: n.startswith(p + "ffn."))
        norm = _manual_norm(model, lambda n, p=prefix: n.startswith(p) and ".norm." in n)
        assert norms[f"block_{i}/attn"] == pytest.approx(attn, rel=1e-5)
        assert norms[f"block_{i}/ffn"] == pytest.approx(ffn, rel=1e-5)
        assert norms[f"block_{i}/norm"] == pytest.approx(norm, rel=1e-5)
    assert norms["total"] == pytest.approx(_manual_norm(model, lambda n: True), rel=1e-5)
    assert norms["embed"] == pytest.approx(
        _manual_norm(model, lambda n: n.startswith(("tok_embed", "pos"))), rel=1e-5
    )


def test_first_last_ratio_is_first_block_norm_over_last():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_MODEL))
    _backward(model, _tokens(4, 8))
    layout = Layout.of(model)
    norms = grad_norms(model, layout)
    assert layout.blocks == ("block_0", "block_1", "block_2")
    first = _manual_norm(model, lambda n: n.startswith("blocks.0."))
    last = _manual_norm(model, lambda n: n.startswith("blocks.2."))
    assert first_last_ratio(norms, layout.blocks) == pytest.approx(first / last, rel=1e-5)


def test_encoder_decoder_blocks_are_named_enc_and_dec_in_depth_order():
    model = build_model(ModelConfig(**TINY_MODEL, arch="encoder_decoder", n_encoder_layers=2))
    layout = Layout.of(model)
    assert layout.blocks == (
        "enc_block_0",
        "enc_block_1",
        "dec_block_0",
        "dec_block_1",
        "dec_block_2",
    )
    assert "cross_attn" in {
        s for g, s in zip(layout.groups, layout.sublayers, strict=True) if g == "dec_block_0"
    }
    assert layout.stacks() == {
        "enc_block": ["enc_block_0", "enc_block_1"],
        "dec_block": ["dec_block_0", "dec_block_1", "dec_block_2"],
    }


# ----------------------------------------------------------------------------- noise scale


def test_noise_scale_estimates_invert_the_expected_squared_norms():
    # E|G_B|^2 = |G|^2 + tr(Σ)/B: with |G|^2 = 4 and tr(Σ) = 32, B = 8 and 16 give 8 and 6.
    g2, trace = noise_scale_estimates(sq_small=8.0, sq_big=6.0, b_small=8, b_big=16)
    assert g2 == pytest.approx(4.0)
    assert trace == pytest.approx(32.0)


def _regression_grads(w, x, y):
    """Per-batch gradients of 0.5 * mean((x w - y)^2): x [N, B, d], y [N, B] -> [N, d]."""
    r = x @ w - y
    return (x * r[..., None]).mean(1)


def test_noise_scale_recovers_the_known_noise_scale_of_linear_regression():
    # x ~ N(0, I_d), y = eps ~ N(0, s^2), w = delta: the per-example gradient x (x.delta - eps)
    # has mean delta and tr(Σ) = (d + 1)|delta|^2 + d s^2, so B_simple = (d + 1) + d s^2/|delta|^2.
    d, s, b, n = 16, 1.0, 32, 3000
    w = torch.zeros(d, dtype=torch.float64)
    w[0] = 1.0
    expected = (d + 1) + d * s**2 / float(w @ w)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, b, d, generator=gen, dtype=torch.float64)
    y = s * torch.randn(n, b, generator=gen, dtype=torch.float64)
    big = _regression_grads(w, x, y)
    small = _regression_grads(w, x[:, : b // 2], y[:, : b // 2])
    est = NoiseScale(beta=0.9995)
    for g_small, g_big in zip(small, big, strict=True):
        est.update(float(g_small @ g_small), float(g_big @ g_big), b // 2, b)
    # Over 10 seeds the estimate's spread is ~3% here; 10% is a 3-sigma band.
    assert est.value == pytest.approx(expected, rel=0.1)
    assert est.grad_sq == pytest.approx(1.0, rel=0.1)


class _Regression(L.LightningModule):
    """Linear regression y = eps with the weight held at e_1 (lr = 0)."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.model = nn.Linear(d, 1, bias=False)
        with torch.no_grad():
            self.model.weight.zero_()
            self.model.weight[0, 0] = 1.0

    def compute_loss(self, batch):
        return 0.5 * (self.model(batch["x"]).squeeze(-1) - batch["y"]).pow(2).mean()

    def training_step(self, batch, batch_idx):
        return self.compute_loss(batch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_callback_noise_scale_uses_the_unclipped_batch_gradient_and_its_first_half(tmp_path):
    d, b, steps = 4, 32, 40
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(steps, b, d, generator=gen), torch.randn(steps, b, generator=gen)
    data = [{"x": x[i], "y": y[i]} for i in range(steps)]
    cfg = DiagnosticsConfig(gradients_every=1, attention_entropy=False)
    cb = GradientDiagnostics(cfg, tmp_path, noise_ema=0.9)
    # Clipping at 1e-3 would shrink the batch gradient if the callback read it after clipping.
    _trainer(tmp_path, steps, cb, clip=1e-3).fit(
        _Regression(d), train_dataloaders=DataLoader(data, batch_size=None)
    )

    w = torch.zeros(d, dtype=torch.float64)
    w[0] = 1.0
    big = _regression_grads(w, x.double(), y.double())
    small = _regression_grads(w, x[:, : b // 2].double(), y[:, : b // 2].double())
    ref = NoiseScale(beta=0.9)
    for g_small, g_big in zip(small, big, strict=True):
        ref.update(float(g_small @ g_small), float(g_big @ g_big), b // 2, b)
    assert cb.noise.n == steps
    assert cb.noise.value == pytest.approx(ref.value, rel=1e-4)
    assert cb.noise.trace == pytest.approx(ref.trace, rel=1e-4)


# ----------------------------------------------------------------------------- attention entropy


def test_entropy_of_uniform_attention_is_log_keys_and_of_one_hot_is_zero():
    b, h, t, s = 2, 3, 5, 7
    uniform = torch.full((b, h, t, s), 1.0 / s)
    one_hot = F.one_hot(torch.randint(0, s, (b, h, t)), s).float()
    assert torch.allclose(attention_entropy(uniform), torch.full((h,), math.log(s)))
    assert torch.allclose(attention_entropy(one_hot), torch.zeros(h))


def test_masked_keys_add_no_entropy():
    # Causal uniform attention: query t sees t + 1 keys, so its entropy is log(t + 1).
    t = 6
    allowed = torch.ones(t, t).tril()
    probs = (allowed / allowed.sum(-1, keepdim=True))[None, None]
    expected = sum(math.log(i + 1) for i in range(t)) / t
    assert attention_entropy(probs).item() == pytest.approx(expected, rel=1e-6)


def test_attention_entropies_cover_every_layer_and_restore_the_model():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_MODEL, arch="encoder_decoder", n_encoder_layers=1))
    model.train()
    src, tgt = torch.randint(0, 16, (2, 6)), torch.randint(0, 16, (2, 5))
    ent = attention_entropies(model, lambda: model(src, tgt))
    assert set(ent) == {"enc_layer_0"} | {f"dec_layer_{i}" for i in range(3)} | {
        f"dec_layer_{i}/cross" for i in range(3)
    }
    assert all(v.shape == (2,) for v in ent.values())
    # Bidirectional attention over 6 keys and cross-attention over 6 keys: at most log 6.
    assert all(0 <= float(v.max()) <= math.log(6) + 1e-5 for v in ent.values())
    assert model.training
    assert not any(m._forward_hooks for m in model.modules())  # the recorder's hooks are gone


def test_attention_logit_max_is_the_largest_allowed_scaled_q_dot_k_of_a_real_query():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_MODEL))
    ids = torch.randint(1, 16, (2, 6))
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True  # the second sequence has 4 real tokens
    captured: dict[str, torch.Tensor] = {}

    def grab_qk(module, args, output):  # q, k of layer 0 from its fused projection
        q, k, _ = output.split(32, dim=-1)
        captured["q"] = q.view(2, 6, 2, 16).transpose(1, 2)
        captured["k"] = k.view(2, 6, 2, 16).transpose(1, 2)

    handle = model.blocks[0].attn.qkv.register_forward_hook(grab_qk)
    stats = attention_stats(model, lambda: model(ids, pad), {"decoder": ~pad})
    handle.remove()
    scores = (captured["q"] @ captured["k"].transpose(-2, -1)).abs() / 4.0  # sqrt(16)
    allowed = torch.ones(6, 6, dtype=torch.bool).tril()[None, None] & ~pad[:, None, None, :]
    allowed = (allowed & ~pad[:, None, :, None]).expand_as(scores)  # padded queries: not measured
    assert float(scores.max()) > float(scores[allowed].max())  # the mask matters here
    assert stats.logit_max["layer_0"] == pytest.approx(float(scores[allowed].max()), rel=1e-5)
    assert set(stats.logit_max) == {"layer_0", "layer_1", "layer_2"}


def test_output_logit_stats_are_max_mean_and_mean_log_partition_of_real_positions():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_MODEL))
    ids = torch.randint(1, 16, (2, 6))
    real = torch.ones(2, 6, dtype=torch.bool)
    real[0, 3:] = False
    logits = model.eval()(ids).detach()
    stats = attention_stats(model, lambda: model(ids), {"decoder": real}).output
    kept = logits[real]
    assert stats["output_logit_max"] == pytest.approx(float(kept.max()), rel=1e-5)
    assert stats["output_logit_mean"] == pytest.approx(float(kept.mean()), rel=1e-4, abs=1e-6)
    assert stats["log_z_mean"] == pytest.approx(float(torch.logsumexp(kept, -1).mean()), rel=1e-5)


def test_attention_stats_entropy_min_is_below_the_mean_and_uniform_is_the_maximum():
    torch.manual_seed(0)
    model = build_model(ModelConfig(**TINY_MODEL))
    ids = torch.randint(1, 16, (2, 6))
    stats = attention_stats(model, lambda: model(ids))
    assert all(float(v.min()) <= float(v.mean()) for v in stats.entropy.values())
    # Causal attention, no padding: query t sees t + 1 keys.
    causal = sum(math.log(t + 1) for t in range(6)) / 6
    assert stats.uniform == pytest.approx({f"layer_{i}": causal for i in range(3)}, rel=1e-6)
    assert all(float(stats.entropy[k].max()) <= v + 1e-5 for k, v in stats.uniform.items())
    # The second sequence has 4 real tokens: its queries 0..3 see 1..4 keys.
    pad = torch.zeros(2, 6, dtype=torch.bool)
    pad[1, 4:] = True
    padded = attention_stats(model, lambda: model(ids, pad), {"decoder": ~pad}).uniform
    expected = (6 * causal + sum(math.log(t + 1) for t in range(4))) / 10
    assert padded["layer_0"] == pytest.approx(expected, rel=1e-6)


# ----------------------------------------------------------------------------- through a Trainer


def _trainer(
    tmp_path: Path, steps: int, *callbacks: L.Callback, clip: float | None = None
) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="logs", version=0),
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        gradient_clip_val=clip,
        callbacks=list(callbacks),
    )


def _logged(tmp_path: Path) -> dict[int, dict[str, float]]:
    """CSVLogger rows merged per step: {step: {key: value}}."""
    out: dict[int, dict[str, float]] = {}
    with (tmp_path / "logs" / "version_0" / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            step = out.setdefault(int(row["step"]), {})
            step.update({k: float(v) for k, v in row.items() if v != "" and k != "step"})
    return out


def _bench_module(**overrides) -> tuple[BenchModule, list[dict[str, torch.Tensor]]]:
    o = {
        "model.d_model": 32,
        "model.n_layers": 2,
        "model.n_heads": 2,
        "model.vocab_size": 16,
        "train.warmup_steps": 0,
        "train.lr": 1e-2,
        **overrides,
    }
    cfg = build_run_config(overrides=o)
    torch.manual_seed(0)
    data = [_tokens(8, 8, seed=i) for i in range(8)]
    return BenchModule(cfg), data


def test_callback_logs_cond_keys_every_n_steps_and_writes_npz_and_png(tmp_path):
    module, data = _bench_module()
    cb = GradientDiagnostics(DiagnosticsConfig(gradients_every=2), tmp_path)
    _trainer(tmp_path, 5, cb, clip=1.0).fit(
        module, train_dataloaders=DataLoader(data, batch_size=None)
    )
    logged = _logged(tmp_path)
    measured = sorted(s for s, row in logged.items() if "cond/grad_norm_total" in row)
    assert measured == [0, 2, 4]
    row = logged[0]
    for key in [
        "cond/grad_norm/block_0",
        "cond/grad_norm/block_1/attn",
        "cond/grad_norm/block_1/ffn",
        "cond/grad_norm/block_0/norm",
        "cond/grad_norm/embed",
        "cond/grad_norm_ratio_first_last",
        "cond/grad_norm_total_clipped",
        "cond/update_ratio/block_0",
        "cond/update_ratio_total",
        "cond/noise_scale",
        "cond/attn_entropy/layer_0",
        "cond/attn_entropy/layer_1",
        "cond/attn_entropy_min/layer_1",
        "cond/attn_entropy_uniform/layer_0",
        "cond/attn_logit_max/layer_0",
        "cond/attn_logit_max/layer_1",
        "cond/output_logit_max",
        "cond/output_logit_mean",
        "cond/log_z_mean",
    ]:
        assert key in row, key
    assert row["cond/attn_entropy_min/layer_0"] <= row["cond/attn_entropy/layer_0"]
    assert row["cond/output_logit_max"] > row["cond/output_logit_mean"]
    # log Z >= the largest logit of each position, hence >= their mean
    assert row["cond/log_z_mean"] > row["cond/output_logit_mean"]
    assert row["cond/grad_norm_ratio_first_last"] == pytest.approx(
        row["cond/grad_norm/block_0"] / row["cond/grad_norm/block_1"], rel=1e-5
    )

    d = tmp_path / "diagnostics"
    assert (d / "grad_norm_depth.png").stat().st_size > 0
    assert (d / "attn_entropy.png").stat().st_size > 0
    z = np.load(d / "gradients.npz")
    assert z["steps"].tolist() == [0, 2, 4]
    assert z["blocks"].tolist() == ["block_0", "block_1"]
    assert z["grad_norm_blocks"].shape == (3, 2)
    assert z["grad_norm_blocks"][0, 0] == pytest.approx(row["cond/grad_norm/block_0"], rel=1e-5)
    assert z["entropy_layers"].tolist() == ["layer_0", "layer_1"]
    assert z["attn_entropy"].shape == (3, 2, 2)  # steps x layers x heads
    assert not list(d.glob(".*tmp"))  # atomic writes leave no temp files


def test_step0_total_norm_is_the_gradient_at_init_and_clipping_is_measured(tmp_path):
    module, data = _bench_module()
    # The same initial weights and first batch, by hand.
    torch.manual_seed(0)
    ref = _bench_module()[0]
    ref.compute_loss(data[0]).backward()
    at_init = _manual_norm(ref.model, lambda n: True)
    assert at_init > 0.05

    clip = 0.05
    cb = GradientDiagnostics(
        DiagnosticsConfig(gradients_every=1, noise_scale=False, attention_entropy=False), tmp_path
    )
    _trainer(tmp_path, 3, cb, clip=clip).fit(
        module, train_dataloaders=DataLoader(data, batch_size=None)
    )
    row = _logged(tmp_path)[0]
    assert row["cond/grad_norm_total"] == pytest.approx(at_init, rel=1e-4)
    # clip_grad_norm_ scales by clip / (norm + 1e-6).
    assert row["cond/grad_norm_total_clipped"] == pytest.approx(
        clip * at_init / (at_init + 1e-6), rel=1e-4
    )


def test_without_clipping_the_clipped_norm_equals_the_total_norm(tmp_path):
    module, data = _bench_module()
    cb = GradientDiagnostics(
        DiagnosticsConfig(gradients_every=1, noise_scale=False, attention_entropy=False), tmp_path
    )
    _trainer(tmp_path, 2, cb, clip=None).fit(
        module, train_dataloaders=DataLoader(data, batch_size=None)
    )
    for row in _logged(tmp_path).values():
        if "cond/grad_norm_total" in row:
            assert row["cond/grad_norm_total_clipped"] == pytest.approx(
                row["cond/grad_norm_total"], rel=1e-5
            )


def test_update_ratio_is_the_relative_change_of_the_weights_over_the_step(tmp_path):
    module, data = _bench_module()
    before = {n: p.detach().clone() for n, p in module.model.named_parameters()}
    cb = GradientDiagnostics(
        DiagnosticsConfig(gradients_every=1, noise_scale=False, attention_entropy=False), tmp_path
    )
    _trainer(tmp_path, 1, cb).fit(module, train_dataloaders=DataLoader(data, batch_size=None))
    after = {n: p.detach() for n, p in module.model.named_parameters()}
    block0 = [n for n in before if n.startswith("blocks.0.")]
    dw = math.sqrt(sum(float((after[n] - before[n]).pow(2).sum()) for n in block0))
    w = math.sqrt(sum(float(before[n].pow(2).sum()) for n in block0))
    dw_all = math.sqrt(sum(float((after[n] - before[n]).pow(2).sum()) for n in before))
    w_all = math.sqrt(sum(float(before[n].pow(2).sum()) for n in before))
    row = _logged(tmp_path)[0]
    assert row["cond/update_ratio/block_0"] == pytest.approx(dw / w, rel=1e-4)
    assert row["cond/update_ratio_total"] == pytest.approx(dw_all / w_all, rel=1e-4)


def test_diagnostics_do_not_change_the_training_trajectory(tmp_path):
    # The extra half-batch backward runs with its own RNG state and leaves p.grad alone.
    def final_weights(callbacks: list[L.Callback], sub: str) -> torch.Tensor:
        module, data = _bench_module(**{"model.dropout": 0.1})
        _trainer(tmp_path / sub, 4, *callbacks, clip=1.0).fit(
            module, train_dataloaders=DataLoader(data, batch_size=None)
        )
        return torch.cat([p.detach().flatten() for p in module.model.parameters()])

    plain = final_weights([], "plain")
    cb = GradientDiagnostics(DiagnosticsConfig(gradients_every=1), tmp_path)
    with_diag = final_weights([cb], "diag")
    assert torch.equal(plain, with_diag)


def test_train_run_with_gradient_diagnostics_records_cond_metrics(tiny, tmp_path):
    from bench.training.run import train_run

    run_dir = tmp_path / "run"
    cfg = tiny(
        **{
            "tracking.run_dir": str(run_dir),
            "diagnostics.gradients_every": 5,
            "diagnostics.peak_flops": 1e10,
        }
    )
    result = train_run(cfg)  # bench.diagnostics.build_callbacks adds GradientDiagnostics
    assert result.status == "completed"
    z = np.load(run_dir / "diagnostics" / "gradients.npz")
    assert z["steps"].tolist() == [0, 5, 10, 15]
    header = (run_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"cond/grad_norm_total", "cond/noise_scale", "cond/attn_entropy/layer_0"} <= set(header)

"""Normalization, block and loss variants of issue 26 through every path bench has.

DyT (Zhu et al. 2025), Peri-LN (Kim et al. 2025; the ``sandwich`` class), Mix-LN (Li et
al. 2024), the parallel block (GPT-J; Chowdhery et al. 2022) and z-loss (PaLM; Wortsman
et al. 2023). Their forward and gradient against the papers' equations in float64 are in
``tests/test_model_reference.py``; z-loss, a loss rather than a model, is checked here
against its formula. Here: the config errors, the encoder-decoder, µP, checkpoint resume,
a sweep over the new axis, and what the training loop logs.
"""

from __future__ import annotations

import math

import pytest
import torch
from sweep_helpers import tiny_spec, write_spec

from bench.config import ConfigError, ModelConfig, TrainConfig, build_run_config
from bench.model import build_model
from bench.model.block import PLACEMENTS
from bench.model.norms import DyT, LayerNorm, Norm
from bench.model.placement import MixLN, ParallelNorm, PostNorm, PreNorm, SandwichNorm
from bench.training.module import BenchModule, z_loss_term
from bench.training.optimizer import build_optimizer
from bench.training.run import train_run

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = dict(d_model=16, n_heads=2, vocab_size=20, max_len=16)


def model(**kw: object) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**SMALL, **kw}))


# ----------------------------------------------------------------------------- DyT


def test_dyt_starts_at_the_papers_init_and_replaces_every_norm_the_final_one_too():
    m = model(norm_type="dyt", dyt_alpha=0.8)
    norms = [mod for mod in m.modules() if isinstance(mod, Norm)]
    # two per block (attention, FFN) and the final norm of Pre-LN
    assert len(norms) == 2 * 2 + 1 and all(isinstance(n, DyT) for n in norms)
    for n in norms:
        assert n.alpha.shape == (1,) and n.alpha.item() == pytest.approx(0.8)
        assert torch.equal(n.weight, torch.ones(16)) and torch.equal(n.bias, torch.zeros(16))
    assert ModelConfig().dyt_alpha == 0.5  # Section 7: the default outside LLMs


def test_dyt_is_gamma_tanh_alpha_x_plus_beta_and_keeps_the_input_dtype():
    n = DyT(4, bias=True, alpha=0.75).double()  # 0.75: exact in float32, where it starts
    gain, beta = [1.0, 2.0, -1.0, 0.5], [0.0, 0.1, 0.2, -0.3]
    with torch.no_grad():
        n.weight.copy_(torch.tensor(gain, dtype=torch.float64))
        n.bias.copy_(torch.tensor(beta, dtype=torch.float64))
    x = torch.tensor([[-3.0, 0.0, 1.0, 10.0]], dtype=torch.float64)
    want = [g * math.tanh(0.75 * v) + b for v, g, b in zip(x[0].tolist(), gain, beta, strict=True)]
    assert n(x)[0].tolist() == pytest.approx(want, rel=1e-12)
    assert DyT(4)(torch.ones(2, 4, dtype=torch.bfloat16)).dtype == torch.bfloat16
    assert DyT(4, bias=False).bias is None  # the authors' LLaMA code: no beta


def test_dyt_alpha_learns():
    m = model(norm_type="dyt")
    x = torch.randint(0, 20, (2, 6))
    m(x).logsumexp(-1).sum().backward()
    assert all(
        mod.alpha.grad is not None and mod.alpha.grad.abs().item() > 0
        for mod in m.modules()
        if isinstance(mod, DyT)
    )


# ----------------------------------------------------------------------------- placements


def test_peri_is_the_sandwich_class_registered_twice():
    assert PLACEMENTS["peri"] is PLACEMENTS["sandwich"] is SandwichNorm
    a, b = model(norm_placement="peri"), model(norm_placement="sandwich")
    assert {k: v.shape for k, v in a.state_dict().items()} == {
        k: v.shape for k, v in b.state_dict().items()
    }
    x = torch.randint(0, 20, (2, 6))
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize(
    ("layers", "fraction", "n_post"),
    [
        (12, 0.25, 3),
        (24, 0.25, 6),
        (4, 0.25, 1),
        (2, 0.25, 0),
        (4, 0.5, 2),
        (4, 0.0, 0),
        (3, 1.0, 3),
    ],
)
def test_mixln_makes_the_first_floor_fraction_of_blocks_post_ln(layers, fraction, n_post):
    m = model(norm_placement="mixln", n_layers=layers, mixln_post_fraction=fraction)
    kinds = [type(b.attn_res) for b in m.blocks]
    assert kinds == [PostNorm] * n_post + [PreNorm] * (layers - n_post)
    assert [type(b.ffn_res) for b in m.blocks] == kinds
    assert m.final_norm is not None  # Pre-LN's final norm (the authors' LLaMA code keeps it)
    assert MixLN.n_post(m.cfg, layers) == n_post


def test_mixln_counts_each_stack_of_an_encoder_decoder_on_its_own():
    m = model(norm_placement="mixln", arch="encoder_decoder", n_layers=4, n_encoder_layers=8)
    assert [type(b.attn_res) for b in m.encoder.blocks] == [PostNorm] * 2 + [PreNorm] * 6
    dec = m.decoder.blocks
    assert [type(b.attn_res) for b in dec] == [PostNorm] + [PreNorm] * 3
    assert [type(b.cross_res) for b in dec] == [PostNorm] + [PreNorm] * 3


def test_the_parallel_block_has_one_shared_norm_and_adds_both_branches():
    seq, par = model(), model(block="parallel")
    for b in par.blocks:
        assert isinstance(b.parallel_res, ParallelNorm) and b.attn_res is None and b.ffn_res is None
        assert isinstance(b.parallel_res.norm, LayerNorm)
    # one LayerNorm (gain and bias) a block fewer than the sequential block
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(seq) - n(par) == 2 * (16 + 16)
    b, x = par.blocks[0], torch.randn(2, 5, 16)
    from bench.model.attention import attention_inputs

    inputs = attention_inputs(5, 5, causal=True, device=x.device)
    h = b.parallel_res.norm(x)
    assert torch.allclose(b(x, inputs), x + b.attn(h, inputs) + b.ffn(h), atol=1e-6)


@pytest.mark.parametrize(
    "axes",
    [
        dict(norm_type="dyt"),
        dict(norm_placement="peri", norm_type="dyt"),
        dict(norm_placement="mixln", n_layers=4),
        dict(norm_placement="mixln", n_layers=4, norm_type="dyt", n_kv_heads=1, pos_encoding="t5"),
    ],
)
def test_encoder_decoder_trains_a_step_and_generates_with(axes):
    m = model(arch="encoder_decoder", **axes)
    src, tgt = torch.randint(0, 20, (2, 7)), torch.randint(0, 20, (2, 5))
    loss = m(src, tgt).logsumexp(-1).mean()
    loss.backward()
    assert torch.isfinite(loss) and all(
        p.grad is not None for p in m.parameters() if p.requires_grad
    )
    assert m.generate(src, 3, bos_id=1).shape == (2, 3)


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"model.qk_norm": True, "model.norm_type": "dyt"},
            "model.qk_norm=true with model.norm_type=dyt",
        ),
        (
            {"model.block": "parallel", "model.norm_placement": "post"},
            "model.block=parallel with norm_placement=post",
        ),
        (
            {"model.block": "parallel", "model.norm_placement": "mixln"},
            "allowed: norm_placement=pre and arch=decoder",
        ),
        ({"model.block": "parallel", "model.arch": "encoder_decoder"}, "arch=encoder_decoder"),
        ({"model.block": "wide"}, "model.block"),
        ({"model.dyt_alpha": 0}, "model.dyt_alpha"),
        ({"model.mixln_post_fraction": 1.5}, "model.mixln_post_fraction"),
        ({"train.z_loss": -1e-4}, "train.z_loss"),
    ],
)
def test_a_bad_combination_is_one_config_error_line(overrides, message):
    with pytest.raises(ConfigError) as e:
        build_run_config(overrides=overrides)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_command_line_refuses_qk_norm_with_dyt_in_one_line_with_exit_2(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "bench", "train", "model.norm_type=dyt", "model.qk_norm=true"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "qk_norm" in proc.stderr


# ----------------------------------------------------------------------------- µP


def test_under_mup_dyt_scalars_and_the_parallel_norm_keep_the_base_lr_and_no_decay():
    cfg = ModelConfig(d_model=64, n_heads=4, vocab_size=20, norm_type="dyt", block="parallel")
    torch.manual_seed(0)
    m = build_model(cfg, "mup", 16)
    opt, _ = build_optimizer(m, TrainConfig(lr=1e-2, weight_decay=0.1, parameterization="mup"))
    group_of = {id(p): g for g in opt.param_groups for p in g["params"]}
    dyts = [mod for mod in m.modules() if isinstance(mod, DyT)]
    assert len(dyts) == 2 + 1  # one per parallel block and the final one
    for mod in dyts:
        for p in mod.parameters():  # alpha (a scalar), gamma and beta (vectors of width d)
            assert group_of[id(p)]["initial_lr"] == 1e-2 and group_of[id(p)]["weight_decay"] == 0.0
        assert mod.alpha.item() == 0.5  # µP rescales matrices only
    hidden = m.blocks[0].ffn.fc_in.weight
    assert group_of[id(hidden)]["initial_lr"] == pytest.approx(
        1e-2 / 4
    )  # the µP rule still applies


def test_mup_at_the_base_width_computes_what_standard_computes_with_dyt_and_mixln():
    cfg = ModelConfig(
        **{**SMALL, "d_model": 32}, norm_type="dyt", norm_placement="mixln", n_layers=4
    )
    torch.manual_seed(0)
    sp = build_model(cfg, "standard")
    torch.manual_seed(0)
    mup = build_model(cfg, "mup", 32)
    mup.load_state_dict(sp.state_dict())  # µP zeroes the query at init; compare the forward
    x = torch.randint(0, 20, (2, 6))
    assert torch.allclose(sp(x), mup(x), atol=1e-6)


# ----------------------------------------------------------------------------- z-loss


def test_z_loss_term_is_the_mean_squared_log_normalizer_of_the_scored_positions():
    logits = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, False, True, True, False])
    got = z_loss_term(logits, mask)
    rows = [logits[i] for i in range(5) if mask[i]]
    want = sum(torch.log(torch.exp(r).sum()) ** 2 for r in rows) / len(rows)
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    (g,) = torch.autograd.grad(got, logits)
    # d/dl of log(Z)^2 = 2 log(Z) softmax(l), averaged over the scored rows; 0 elsewhere
    for i in range(5):
        expect = (
            2 * torch.logsumexp(logits[i], 0) * torch.softmax(logits[i], 0) / 3
            if mask[i]
            else torch.zeros(7)
        )
        assert torch.allclose(g[i], expect.detach().double(), atol=1e-12)
    assert z_loss_term(logits, torch.zeros(5, dtype=torch.bool)).item() == 0.0


def test_the_training_loss_adds_z_loss_times_the_term_and_is_cross_entropy_when_off(tiny):
    batch = {"input_ids": torch.randint(0, 20, (3, 8)), "labels": torch.randint(0, 20, (3, 8))}
    batch["labels"][0, :4] = -100
    on = BenchModule(tiny(**{"train.z_loss": 1e-2, "model.vocab_size": 20}))
    off = BenchModule(tiny(**{"model.vocab_size": 20}))
    off.model.load_state_dict(on.model.state_dict())
    logits = on.model(batch["input_ids"]).flatten(0, 1).double()
    labels = batch["labels"].flatten()
    keep = labels != -100
    ce = torch.nn.functional.cross_entropy(logits[keep], labels[keep])
    log_z = torch.logsumexp(logits[keep], -1)
    assert on.training_loss(batch).item() == pytest.approx(
        (ce + 1e-2 * log_z.square().mean()).item(), rel=1e-5
    )
    assert off.training_loss(batch).item() == pytest.approx(ce.item(), rel=1e-5)
    assert "1e-02 * mean(log(Z)^2)" not in off.training_loss_name
    assert "0.01 * mean(log(Z)^2)" in on.training_loss_name


# ----------------------------------------------------------------------------- runs


def test_a_crashed_dyt_parallel_z_loss_run_resumes_to_the_same_final_metrics(tiny):
    from test_train import _CrashAt

    o = {
        "train.max_steps": 30,
        "train.checkpoint_every": 10,
        "model.norm_type": "dyt",
        "model.block": "parallel",
        "train.z_loss": 1e-4,
        "train.log_every": 5,
    }
    full = train_run(tiny(**o, **{"tracking.name": "full"}))
    cfg = tiny(**o, **{"tracking.name": "crashed"})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_run(cfg, callbacks=[_CrashAt(15)])
    run_dir = next(p for p in full.run_dir.parent.iterdir() if p.name.startswith("crashed"))
    resumed = train_run(cfg, resume=run_dir)
    assert resumed.status == "completed"
    for key in ("val/loss", "train/loss", "train/z_loss", "train/log_z_rms"):
        assert resumed.metrics[key] == pytest.approx(full.metrics[key], rel=1e-6), key
    # the logged term is z_loss times the squared RMS of log Z on the same batch
    assert full.metrics["train/z_loss"] == pytest.approx(
        1e-4 * full.metrics["train/log_z_rms"] ** 2, rel=1e-4
    )


def test_a_sweep_over_the_new_norm_type_runs_both_cells(tmp_path):
    from bench.report.collect import load_sweep
    from bench.sweeps.worker import run_worker

    spec = tiny_spec(
        compare={"model.norm_type": ["layernorm", "dyt"]},
        tune={"params": {"train.lr": {"low": 3e-3, "high": 1e-2, "log": True}}, "trials": 1},
        seeds=0,
    )
    path = write_spec(tmp_path / "s.yaml", spec)
    assert run_worker(str(path), out=str(tmp_path / "sweep"), worker_id="w0", threads=1) == 0
    rows = load_sweep(tmp_path / "sweep").rows
    assert {r["cell"] for r in rows if r["status"] == "completed"} == {
        "norm_type=layernorm",
        "norm_type=dyt",
    }


# ----------------------------------------------------------------------------- bench variants


def test_every_citation_names_a_real_field_and_value_and_bench_variants_prints_it(capsys):
    import argparse

    from bench.cli.train import cmd_variants
    from bench.config import axes
    from bench.config.citations import CITATIONS, NORM_BLOCK_LOSS

    sections = {"model": ModelConfig.model_fields, "train": TrainConfig.model_fields}
    for key in CITATIONS:
        field, _, value = key.partition("=")
        section, name = field.split(".")
        assert name in sections[section], key
        if value:
            assert value in axes()[name], key
    assert set(NORM_BLOCK_LOSS) == {
        "model.norm_type=dyt",
        "model.norm_placement=peri",
        "model.norm_placement=mixln",
        "model.block=parallel",
        "train.z_loss",
    }
    assert cmd_variants(argparse.Namespace()) == 0
    out = capsys.readouterr().out
    for key, cite in CITATIONS.items():
        assert f"{key:<28} {cite}" in out
    for preset in ("dyt ", "palm ", "peri-ln "):
        assert f"  {preset}" in out


def test_mixln_with_a_post_ln_first_block_gets_post_lns_init_warning():
    tiny_inputs = dict(init="gpt2", embed_scale="none", n_layers=4)
    assert "near uniform" in ModelConfig(norm_placement="mixln", **tiny_inputs).init_warning()
    # 2 layers at 0.25: no Post-LN block, so Pre-LN's (absent) warning
    assert (
        ModelConfig(norm_placement="mixln", **{**tiny_inputs, "n_layers": 2}).init_warning() is None
    )
    assert ModelConfig(norm_placement="pre", **tiny_inputs).init_warning() is None

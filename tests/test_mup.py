"""µP (``train.parameterization: mup``) against the rules of Tensor Programs V, written here
again from the paper and mup's README, not from ``bench.model.parameterization``.

The rules, for Adam (Yang et al. 2022, arXiv 2203.03466, Table 3; ``[SP]``):

- input weights (embedding tables) and all biases: init var const in width, LR const;
- hidden weights: init var ∝ 1/fan_in [same], LR ∝ 1/fan_in [const];
- output weights, in the multiplier form of the ``mup`` package (``MuReadout``): logits x
  ``1/width_mult``, LR const; zero init (``readout_zero_init``), and a zero query (README);
- weight decay: ``MuAdamW(decoupled_wd=False)`` multiplies a hidden weight's decay by
  its width multiplier.

Each rule is pinned at the base width, where µP equals the standard parameterization.
The test's own classification of parameters is by their name and role in a transformer;
the expected numbers are computed in float64 from the formulas below.
"""

from __future__ import annotations

import math

import pytest
import torch

from bench.config import ConfigError, ModelConfig, TrainConfig, build_run_config
from bench.model import build_model
from bench.training.optimizer import build_optimizer

BASE, WIDE, HEADS, LAYERS, VOCAB = 32, 128, 4, 2, 64
LR, WD = 1e-2, 0.1


def model_at(width: int, parameterization: str, seed: int = 0, **kw: object) -> torch.nn.Module:
    cfg = ModelConfig(d_model=width, n_heads=HEADS, n_layers=LAYERS, vocab_size=VOCAB, **kw)
    torch.manual_seed(seed)
    return build_model(cfg, parameterization, BASE)


# ----------------------------------------------------------------------------- Table 3, here


def roles(name: str, shape: tuple[int, ...]) -> list[tuple[str, str, slice]]:
    """``(block name, kind, rows)`` of a parameter: kind input | hidden | output | query |
    vector (biases, norm gains). The fused q/k/v projection is three blocks."""
    if name in ("tok_embed.weight", "pos.table.weight"):
        return [(name, "input", slice(None))]
    if name == "lm_head.weight":
        return [(name, "output", slice(None))]
    if len(shape) == 1:
        return [(name, "vector", slice(None))]
    if name.endswith("attn.qkv.weight"):
        d = shape[0] // 3
        return [
            (name + "[q]", "query", slice(0, d)),
            (name + "[k]", "hidden", slice(d, 2 * d)),
            (name + "[v]", "hidden", slice(2 * d, 3 * d)),
        ]
    assert name.endswith(("attn.out.weight", "ffn.fc_in.weight", "ffn.fc_out.weight")), name
    return [(name, "hidden", slice(None))]


def xavier_std(fan_out: int, fan_in: int) -> float:
    return math.sqrt(2.0 / (fan_out + fan_in))


def sp_std(kind: str, shape: tuple[int, int], width: int) -> float:
    """bench's default init (xavier, N(0, d^-1/2) tables) in the standard parameterization."""
    if kind in ("hidden", "query"):
        return xavier_std(*shape)
    return width**-0.5  # input tables and the untied head


def mup_std(kind: str, shape: tuple[int, int], width: int) -> float:
    """Table 3 pinned at the base width: hidden var = SP's var at the base shape x
    base fan_in / fan_in; input tables keep the base width's std; readout and query 0."""
    if kind in ("output", "query"):
        return 0.0
    if kind == "input":
        return BASE**-0.5
    fan_out, fan_in = shape
    ratio = width / BASE  # every hidden dimension is a multiple of d_model here
    base_shape = (round(fan_out / ratio), round(fan_in / ratio))
    return xavier_std(*base_shape) * math.sqrt(base_shape[1] / fan_in)


def mup_lr_and_wd(kind: str, shape: tuple[int, ...], width: int) -> tuple[float, float]:
    """Adam: hidden LR x base fan_in / fan_in and (MuAdamW) decay x fan_in / base fan_in;
    everything else LR const; biases, norm gains and tables not decayed (bench's rule)."""
    if kind in ("hidden", "query"):
        fan_in = shape[1]
        base_fan_in = fan_in * BASE / width  # every hidden fan-in is a multiple of d_model
        m = fan_in / base_fan_in
        return LR / m, WD * m
    return LR, WD if kind == "output" else 0.0


def sample_std(w: torch.Tensor) -> float:
    return w.double().pow(2).mean().sqrt().item()  # about zero mean: the init's std


# ----------------------------------------------------------------------------- init


@pytest.mark.parametrize("width", [BASE, 64, WIDE])
def test_mup_init_std_of_every_parameter_is_table_3s(width):
    mup = model_at(width, "mup", tie_embeddings=False)
    sp = model_at(width, "standard", tie_embeddings=False)
    sp_params = dict(sp.named_parameters())
    for name, p in mup.named_parameters():
        for block, kind, rows in roles(name, tuple(p.shape)):
            w, w_sp = p.detach()[rows], sp_params[name].detach()[rows]
            if kind == "vector":
                assert torch.equal(w, w_sp), f"{block}: biases and gains are the scheme's"
                continue
            shape = (w.shape[0], w.shape[1])
            expected = mup_std(kind, shape, width)
            if expected == 0.0:
                assert not w.any(), f"{block} starts at zero"
                continue
            # The same seed draws the same numbers: the ratio to SP is exact (float32) ...
            ratio = sample_std(w) / sample_std(w_sp)
            assert ratio == pytest.approx(expected / sp_std(kind, shape, width), rel=1e-6), block
            # ... and the std itself agrees up to sampling error (>= 1024 draws: ~2%).
            assert sample_std(w) == pytest.approx(expected, rel=0.08), block


def test_mup_hidden_init_variance_times_fan_in_is_constant_across_widths():
    """Table 3's hidden weights: var x fan_in the same at 32, 64 and 128."""
    products = []
    for width in (BASE, 64, WIDE):
        w = model_at(width, "mup").blocks[0].ffn.fc_out.weight.detach()
        products.append(sample_std(w) ** 2 * w.shape[1])
    assert max(products) / min(products) < 1.1


def test_gpt2_init_under_mup_shrinks_hidden_weights_with_fan_in():
    """mup.init.normal_: a width-independent std (gpt2's 0.02) becomes 0.02 x
    sqrt(base fan_in / fan_in) on hidden weights; the embeddings keep 0.02."""
    model = model_at(WIDE, "mup", init="gpt2", embed_scale="none")
    fc_in = model.blocks[0].ffn.fc_in.weight.detach()
    assert sample_std(fc_in) == pytest.approx(0.02 * math.sqrt(BASE / WIDE), rel=0.05)
    assert sample_std(model.tok_embed.weight.detach()) == pytest.approx(0.02, rel=0.05)


def test_torch_init_under_mup_keeps_the_base_widths_linear_biases():
    """mup.rescale_linear_bias: nn.Linear's U(+-fan_in^-1/2) biases (init=torch) are
    vector-like, so they keep the base fan-in's std, 1/sqrt(3 x 32)."""
    model = model_at(WIDE, "mup", init="torch", embed_scale="none")
    bias = model.blocks[0].ffn.fc_in.bias.detach()  # 512 draws
    assert sample_std(bias) == pytest.approx((3 * BASE) ** -0.5, rel=0.1)


def test_mup_at_the_base_width_computes_what_standard_computes():
    """Every multiplier is 1 at the base width: with the same weights, the same logits."""
    sp, mup = model_at(BASE, "standard"), model_at(BASE, "mup")
    mup.load_state_dict(sp.state_dict())
    ids = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    assert torch.equal(sp(ids), mup(ids))


def test_standard_is_the_model_without_a_parameterization():
    torch.manual_seed(0)
    plain = build_model(ModelConfig(d_model=64, n_heads=HEADS, n_layers=LAYERS, vocab_size=VOCAB))
    named = model_at(64, "standard")
    for (n1, p1), (n2, p2) in zip(plain.named_parameters(), named.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(p1, p2)
    assert named.blocks[0].attn.scale is None and named.readout_multiplier == 1.0


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("width", [BASE, WIDE])
def test_mup_attention_scale_is_one_over_d_head_equal_to_sp_at_the_base(width):
    d_head, base_d_head = width // HEADS, BASE // HEADS
    scale = model_at(width, "mup").blocks[1].attn.scale
    assert scale == pytest.approx(math.sqrt(base_d_head) / d_head)  # mup README: 8/d at d_head 64
    assert scale * d_head == pytest.approx(math.sqrt(base_d_head))  # 1/d scaling
    if width == BASE:
        assert scale == pytest.approx(1 / math.sqrt(d_head))


# ----------------------------------------------------------------------------- Adam


def train_cfg(parameterization: str, **kw: object) -> TrainConfig:
    return TrainConfig(lr=LR, weight_decay=WD, parameterization=parameterization, **kw)


def lr_and_wd_of(model: torch.nn.Module, cfg: TrainConfig) -> dict[str, tuple[float, float]]:
    opt, _ = build_optimizer(model, cfg)
    by_id = {
        id(p): (g["initial_lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]
    }
    return {name: by_id[id(p)] for name, p in model.named_parameters()}


@pytest.mark.parametrize("width", [BASE, 64, WIDE])
def test_mup_adam_learning_rate_and_weight_decay_of_every_parameter_are_table_3s(width):
    model = model_at(width, "mup", tie_embeddings=False)
    got = lr_and_wd_of(model, train_cfg("mup"))
    for name, p in model.named_parameters():
        kinds = {kind for _, kind, _ in roles(name, tuple(p.shape))}
        kind = "hidden" if kinds & {"hidden", "query"} else kinds.pop()
        expected = mup_lr_and_wd(kind, tuple(p.shape), width)
        assert got[name] == pytest.approx(expected, rel=1e-12), name


def test_standard_adam_has_one_learning_rate():
    model = model_at(WIDE, "standard")
    assert {lr for lr, _ in lr_and_wd_of(model, train_cfg("standard")).values()} == {LR}


def test_the_schedule_multiplies_each_groups_own_learning_rate():
    """LambdaLR scales every group's initial LR: the per-group µP multipliers survive
    warmup and decay (a scheduler setting absolute LRs would erase them)."""
    cfg = train_cfg("mup", warmup_steps=3, max_steps=10, schedule="cosine")
    model = model_at(WIDE, "mup")
    opt, sched = build_optimizer(model, cfg)
    initial = [g["lr"] for g in opt.param_groups]
    assert len(set(initial)) > 1
    for _ in range(8):
        opt.step()
        sched.step()
        now = [g["lr"] for g in opt.param_groups]
        factor = now[0] / initial[0]
        assert factor != 1.0
        assert now == pytest.approx([lr * factor for lr in initial], rel=1e-12)


# ----------------------------------------------------------------------------- config


def test_mup_base_width_must_give_a_valid_base_model():
    with pytest.raises(ConfigError, match=r"mup_base_width=30.*divisible by model\.n_heads"):
        build_run_config(overrides=["train.parameterization=mup", "train.mup_base_width=30"])
    build_run_config(overrides=["train.mup_base_width=30"])  # standard: not read


def test_parameterization_fields_are_described():
    for name in ("parameterization", "mup_base_width"):
        assert TrainConfig.model_fields[name].description

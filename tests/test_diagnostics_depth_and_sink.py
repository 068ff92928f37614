"""The two measurements behind the claims xiong-init-gradient and attention-sinks.

- ``cond/ffn_out_grad_norm/{block}``: the Frobenius norm of the gradient of each block's
  FFN output matrix W2 (Xiong et al. 2020, Theorem 1 and Fig. 3 bound it at init for the
  last block), checked against a float64 model written from the paper's equations
  (``tests/test_model_reference.Reference``) and against ``p.grad`` through a Trainer.
- ``cond/attn_first_mass[_ratio]/{layer}``: the attention on key 0 (Xiao et al. 2023's
  attention sink) over queries in the second half of the sequence, and its ratio to
  what uniform attention would put there.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from bench.config import DiagnosticsConfig, ModelConfig
from bench.diagnostics.attention.stats import FIRST_MASS_FROM, attention_stats, first_key_mass
from bench.diagnostics.gradients.callback import GradientDiagnostics
from bench.diagnostics.gradients.stats import param_grad_norms
from bench.diagnostics.grouping import ffn_output_weights
from bench.model import build_model
from tests.test_gradients import _bench_module, _logged, _trainer
from tests.test_model_reference import Reference, spec_of, to_reference

# ----------------------------------------------------------------------------- W2 gradient


def test_ffn_output_weights_are_each_blocks_w2_in_depth_order():
    model = build_model(ModelConfig(d_model=16, n_layers=3, n_heads=2, ffn="swiglu"))
    weights = ffn_output_weights(model)
    assert list(weights) == ["block_0", "block_1", "block_2"]
    for i, w in enumerate(weights.values()):
        assert w is model.blocks[i].ffn.fc_out.weight  # d_ff -> d_model, not the gate/up


@pytest.mark.parametrize("placement", ["pre", "post"])
@pytest.mark.parametrize("layers", [1, 3])
def test_last_w2_gradient_at_init_equals_the_papers_float64_model(placement, layers):
    """Bench at init (xavier, as the paper), copied into the reference decoder; the
    gradient of the mean cross-entropy w.r.t. the last block's W2 must agree."""
    torch.manual_seed(layers)
    cfg = ModelConfig(
        d_model=32, n_layers=layers, n_heads=4, vocab_size=20, max_len=16,
        norm_placement=placement,
    )  # fmt: skip
    model = build_model(cfg).double()
    spec = spec_of(cfg)
    ref = Reference(spec, vocab=20, layers=layers)
    ref.load_state_dict(to_reference(dict(model.state_dict()), spec), strict=True)
    gen = torch.Generator().manual_seed(7)
    x, y = (
        torch.randint(0, 20, (6, 12), generator=gen),
        torch.randint(0, 20, (6, 12), generator=gen),
    )
    for m in (model, ref):
        F.cross_entropy(m(x).flatten(0, 1), y.flatten()).backward()
    got = param_grad_norms(ffn_output_weights(model))
    want = ref.layers[layers - 1].w2.grad.norm().item()
    assert got[f"block_{layers - 1}"] == pytest.approx(want, rel=1e-6)
    assert want > 0


def test_callback_logs_each_blocks_w2_gradient_norm_at_step_0(tmp_path):
    module, data = _bench_module()
    torch.manual_seed(0)
    ref = _bench_module()[0]  # the same initial weights and first batch, by hand
    ref.compute_loss(data[0]).backward()
    cfg = DiagnosticsConfig(gradients_every=1, noise_scale=False, attention_entropy=False)
    cb = GradientDiagnostics(cfg, tmp_path)
    _trainer(tmp_path, 2, cb, clip=1e-3).fit(
        module, train_dataloaders=DataLoader(data, batch_size=None)
    )
    row = _logged(tmp_path)[0]
    for i in range(2):
        want = ref.model.blocks[i].ffn.fc_out.weight.grad.norm().item()
        assert row[f"cond/ffn_out_grad_norm/block_{i}"] == pytest.approx(want, rel=1e-4)
    # measured before clipping: the clipped gradient's norm would be below 1e-3
    assert row["cond/ffn_out_grad_norm/block_1"] > 1e-3


# ----------------------------------------------------------------------------- first-key mass


def _causal_uniform(t: int) -> torch.Tensor:
    """Uniform causal attention ``[1, 1, t, t]``: query i spreads over keys 0..i."""
    keys = torch.arange(1, t + 1, dtype=torch.float32)
    return torch.tril(torch.ones(t, t)) / keys[:, None], keys


def test_uniform_causal_attention_puts_mean_1_over_t_plus_1_on_key_0():
    t = 8
    probs, keys = _causal_uniform(t)
    mass, uniform = first_key_mass(probs[None, None], keys[None, None])
    late = range(math.ceil(FIRST_MASS_FROM * t), t)
    expected = sum(1 / (i + 1) for i in late) / len(late)
    assert float(mass) == pytest.approx(expected)
    assert float(uniform) == pytest.approx(expected)


def test_a_sink_head_puts_all_its_mass_on_key_0_and_the_mean_is_over_heads():
    t = 8
    uniform_head, keys = _causal_uniform(t)
    sink_head = torch.zeros(t, t)
    sink_head[:, 0] = 1.0
    probs = torch.stack([sink_head, uniform_head])[None]  # [1, 2, t, t]
    mass, uniform = first_key_mass(probs, keys[None, None])
    assert float(mass) == pytest.approx((1 + float(uniform)) / 2)


def test_padded_queries_are_left_out_of_the_first_key_mass():
    t = 8
    probs, keys = _causal_uniform(t)
    probs = probs[None, None].repeat(2, 1, 1, 1)
    probs[1, :, :, 0] = 1.0  # the second sequence's key 0 gets everything ...
    mask = torch.ones(2, t, dtype=torch.bool)
    mask[1] = False  # ... but its queries are all padding
    mass, uniform = first_key_mass(probs, keys[None, None], mask)
    assert float(mass) == pytest.approx(float(uniform))


def test_attention_stats_report_first_mass_and_its_uniform_value_per_layer():
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=32, n_layers=2, n_heads=2, max_len=32, vocab_size=16))
    ids = torch.randint(0, 16, (3, 10))
    stats = attention_stats(model, lambda: model(ids))
    late = range(5, 10)
    expected = sum(1 / (i + 1) for i in late) / len(late)
    assert stats.first_mass_uniform == pytest.approx({"layer_0": expected, "layer_1": expected})
    assert all(0 < v <= 1 for v in stats.first_mass.values())


def test_callback_logs_first_mass_and_its_ratio_to_uniform(tmp_path):
    module, data = _bench_module()
    cfg = DiagnosticsConfig(gradients_every=1, noise_scale=False, gradients=False)
    _trainer(tmp_path, 2, GradientDiagnostics(cfg, tmp_path)).fit(
        module, train_dataloaders=DataLoader(data, batch_size=None)
    )
    row = _logged(tmp_path)[0]
    # The fixed batch (the first batch's 8 sequences of 8 tokens): its real (non-PAD)
    # queries t >= 4 see t + 1 keys.
    real = (data[0]["input_ids"] != 0)[:, 4:]
    per_query = 1 / torch.arange(5, 9, dtype=torch.float64)
    uniform = float((real * per_query).sum() / real.sum())
    for layer in ("layer_0", "layer_1"):
        mass = row[f"cond/attn_first_mass/{layer}"]
        assert row[f"cond/attn_first_mass_ratio/{layer}"] == pytest.approx(mass / uniform, rel=1e-5)

"""Every combination of the architecture axes builds, trains one step and sends gradients everywhere."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from bench.config import ModelConfig, axes
from bench.model import build_model
from bench.model.norms import ScaleNorm

AX = axes()
# peri is the sandwich class under a second name (test_model_norm_variants): not twice here
PLACEMENTS = tuple(p for p in AX["norm_placement"] if p != "peri")
COMBOS = [
    combo
    for combo in itertools.product(
        AX["arch"], PLACEMENTS, AX["norm_type"], AX["pos_encoding"], AX["ffn"]
    )
    if not (combo[0] == "encoder_decoder" and combo[3] == "fire")  # FIRE is causal-only
]
KV_HEADS = (None, 2, 1)  # MHA, GQA, MQA in rotation


def _case(i: int, combo: tuple) -> ModelConfig:
    arch, placement, norm, pos, ffn = combo
    return ModelConfig(
        arch=arch,
        norm_placement=placement,
        norm_type=norm,
        pos_encoding=pos,
        ffn=ffn,
        # half the cases also normalise queries and keys (not with DyT, which is refused)
        qk_norm=i % 2 == 0 and norm != "dyt",
        n_kv_heads=KV_HEADS[i % 3],
        # every other Pre-LN decoder case has the parallel block (GPT-J, PaLM)
        block="parallel" if placement == "pre" and arch == "decoder" and i % 2 else "sequential",
        mixln_post_fraction=0.5,  # Mix-LN at 2 layers: one Post-LN block, one Pre-LN
        bias=i % 5 != 0,
        d_model=16,
        n_heads=4,
        n_layers=2,
        max_len=8,
        vocab_size=24,
    )


pytestmark = pytest.mark.usefixtures("one_thread")


def _provably_zero_grad(cfg: ModelConfig, model: torch.nn.Module) -> set[str]:
    """Parameters whose gradient is zero by an exact invariance, not by a bug.

    - ``k_norm.bias``: adding one vector to every key shifts all scores of a
      query equally, which the softmax ignores.
    - ScaleNorm's ``g`` in a model without biases: g only rescales the vector,
      and when what follows is positively homogeneous up to the next
      (scale-invariant) norm (relu FFN, qk-normalised attention, deepnorm's
      ``alpha*x + f(x)``), the loss cannot see g. (The test randomises biases,
      so with biases every path is exercised.)
    """
    exempt = {n for n, _ in model.named_parameters() if n.endswith("k_norm.bias")}
    if not cfg.bias:
        exempt |= {f"{name}.g" for name, m in model.named_modules() if isinstance(m, ScaleNorm)}
    return exempt


@pytest.mark.parametrize("i,combo", list(enumerate(COMBOS)), ids=["-".join(c) for c in COMBOS])
def test_every_axis_combination_runs_forward_and_backward_with_gradients_everywhere(i, combo):
    torch.manual_seed(i)
    cfg = _case(i, combo)
    model = build_model(cfg)
    with torch.no_grad():  # zero-init biases make some sublayers locally homogeneous
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
    x = torch.randint(0, 24, (2, 8))
    logits = model(x) if cfg.arch == "decoder" else model(x[:, :6], x)
    loss = F.cross_entropy(logits.flatten(0, 1), torch.roll(x, -1, 1).flatten())
    assert torch.isfinite(loss)
    loss.backward()
    exempt = _provably_zero_grad(cfg, model)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        if name not in exempt:
            assert p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"

"""The coordinate check (Tensor Programs V; :mod:`bench.training.coord_check`) separates
µP from the standard parameterization, and from a µP with a rule left out.

Three steps of Adam at a large LR (3e-2, the mup README's advice: large enough to show
an exploding coordinate) at widths 32, 64 and 128, two layers. ``BOUND`` is the largest
growth allowed from width 32 to 128 (4x): 2, the growth of a size proportional to
``sqrt(width)``, the slowest blow-up a wrong scaling makes (a sum of ``width``
uncorrelated terms); a size of order 1, as µP keeps every activation, stays near 1
(measured: 0.13-0.96). The standard parameterization's readout logits and block outputs
grow like the width (measured 3.2x and 7.5-8x at 4x), as does a µP readout without its
``1/width`` multiplier (3.75x).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.config import RunConfig, build_run_config
from bench.model import build_model
from bench.training.coord_check import CoordData, coord_check

WIDTHS, STEPS, BOUND = (32, 64, 128), 3, 2.0


def config(parameterization: str) -> RunConfig:
    return build_run_config(
        overrides={
            "train.parameterization": parameterization,
            "train.mup_base_width": WIDTHS[0],
            "train.lr": 3e-2,
            "train.warmup_steps": 0,
            "train.schedule": "constant",
            "train.weight_decay": 0.0,
            "train.grad_clip": None,
            "model.n_layers": 2,
            "task.name": "copy",
            "task.seq_len": 16,
            "task.batch_size": 16,
            "task.n_train": 256,
        }
    )


def check(parameterization: str, model_factory=None) -> CoordData:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster and leaves the other core
    try:
        return coord_check(config(parameterization), WIDTHS, STEPS, model_factory=model_factory)
    finally:
        torch.set_num_threads(threads)


def grown(data: CoordData) -> dict[str, float]:
    """The activations that grew by more than BOUND from the narrowest to the widest width."""
    return {name: r for name, r in data.ratios().items() if r > BOUND}


def test_every_activation_is_recorded_at_every_width_and_step():
    data = check("mup")
    names = {"embed", "block0", "block1", "attn_logits0", "attn_logits1", "logits"}
    assert set(data.sizes) == names
    for name in names:
        assert set(data.sizes[name]) == set(WIDTHS)
        assert all(len(steps) == STEPS + 1 for steps in data.sizes[name].values())
        assert all(s > 0 for s in data.sizes[name][WIDTHS[0]][1:]), name


def test_under_mup_no_activation_grows_with_width():
    data = check("mup")
    assert grown(data) == {}, data.ratios()


def test_under_standard_the_readout_logits_grow_with_width():
    data = check("standard")
    assert "logits" in grown(data), data.ratios()


def without_readout_multiplier(run: RunConfig) -> nn.Module:
    """A µP that forgot ``MuReadout``'s 1/width (everything else is µP)."""
    model = build_model(run.model, "mup", run.train.mup_base_width)
    model.readout_multiplier = 1.0
    return model


def test_the_check_catches_a_mup_without_the_readout_multiplier():
    data = check("mup", without_readout_multiplier)
    assert "logits" in grown(data), data.ratios()


@pytest.mark.parametrize("sizes,expected", [((1.0, 2.5), 2.5), ((0.0, 1.0), float("inf"))])
def test_ratio_is_widest_over_narrowest_at_the_last_step(sizes, expected):
    data = CoordData((32, 128), "mup", {"x": {32: [9.0, sizes[0]], 128: [9.0, sizes[1]]}})
    assert data.ratio("x") == expected

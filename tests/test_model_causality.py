"""No position ever sees the future: every encoding x placement, decoder-only and enc-dec."""

from __future__ import annotations

import itertools

import pytest
import torch

from bench.config import ModelConfig, axes
from bench.model import build_model

CASES = list(itertools.product(axes()["pos_encoding"], axes()["norm_placement"]))
DECODER_ONLY = {"fire"}  # ModelConfig refuses it in an encoder-decoder (causal-only)
ENC_DEC_CASES = [(pos, placement) for pos, placement in CASES if pos not in DECODER_ONLY]


def _cfg(**kw) -> ModelConfig:
    base = dict(d_model=16, n_heads=2, n_layers=2, max_len=16, vocab_size=40)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("pos,placement", CASES)
def test_changing_a_future_token_never_changes_earlier_decoder_logits(pos, placement):
    torch.manual_seed(0)
    model = build_model(_cfg(pos_encoding=pos, norm_placement=placement)).eval()
    x = torch.randint(0, 40, (2, 10))
    for k in (3, 7):
        y = x.clone()
        y[:, k:] = (x[:, k:] + 1 + torch.randint(0, 38, y[:, k:].shape)) % 40
        a, b = model(x), model(y)
        torch.testing.assert_close(a[:, :k], b[:, :k], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(a[:, k], b[:, k])  # the changed position itself does change


@pytest.mark.parametrize("pos,placement", ENC_DEC_CASES)
def test_changing_a_future_target_never_changes_earlier_encoder_decoder_logits(pos, placement):
    torch.manual_seed(0)
    model = build_model(
        _cfg(arch="encoder_decoder", pos_encoding=pos, norm_placement=placement)
    ).eval()
    src = torch.randint(0, 40, (2, 6))
    tgt = torch.randint(0, 40, (2, 9))
    k = 4
    changed = tgt.clone()
    changed[:, k:] = (tgt[:, k:] + 1) % 40
    a, b = model(src, tgt), model(src, changed)
    torch.testing.assert_close(a[:, :k], b[:, :k], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a[:, k], b[:, k])


@pytest.mark.parametrize("pos", sorted(set(axes()["pos_encoding"]) - DECODER_ONLY))
def test_the_encoder_is_bidirectional(pos):
    torch.manual_seed(0)
    model = build_model(_cfg(arch="encoder_decoder", pos_encoding=pos)).eval()
    src = torch.randint(0, 40, (1, 6))
    changed = src.clone()
    changed[0, -1] = (src[0, -1] + 1) % 40
    assert not torch.allclose(model.encode(src)[:, 0], model.encode(changed)[:, 0])

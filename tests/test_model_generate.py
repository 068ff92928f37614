"""Greedy decoding agrees with teacher forcing on the sequence it produced."""

from __future__ import annotations

import pytest
import torch

from bench.config import ModelConfig
from bench.model import build_model


def _cfg(**kw) -> ModelConfig:
    base = dict(d_model=32, n_heads=4, n_layers=2, max_len=32, vocab_size=20)
    base.update(kw)
    return ModelConfig(**base)


@pytest.mark.parametrize("pos", ["learned", "rope", "alibi", "t5"])
def test_decoder_greedy_generate_equals_argmax_of_teacher_forced_logits(pos):
    torch.manual_seed(0)
    model = build_model(_cfg(pos_encoding=pos, dropout=0.1))  # train mode: generate must not drop
    prompt = torch.randint(0, 20, (3, 4))
    out = model.generate(prompt, max_new_tokens=6)
    assert out.shape == (3, 10) and model.training
    assert torch.equal(out[:, :4], prompt)
    model.eval()
    logits = model(out)
    assert torch.equal(logits[:, 3:-1].argmax(-1), out[:, 4:])


@pytest.mark.parametrize("pos", ["sinusoidal", "rope", "t5"])
def test_encoder_decoder_greedy_generate_equals_argmax_of_teacher_forced_logits(pos):
    torch.manual_seed(0)
    model = build_model(_cfg(arch="encoder_decoder", pos_encoding=pos)).eval()
    src = torch.randint(2, 20, (3, 7))
    src_pad = torch.zeros(3, 7, dtype=torch.bool)
    src_pad[1, 5:] = True
    out = model.generate(src, max_new_tokens=5, bos_id=1, src_pad=src_pad)
    assert out.shape == (3, 5)
    tgt_in = torch.cat([torch.ones(3, 1, dtype=torch.long), out[:, :-1]], 1)
    assert torch.equal(model(src, tgt_in, src_pad).argmax(-1), out)


def test_generation_stops_at_eos_and_pads_finished_rows_with_it():
    torch.manual_seed(0)
    model = build_model(_cfg()).eval()
    prompt = torch.randint(0, 20, (4, 3))
    free = model.generate(prompt, max_new_tokens=5)
    eos = int(free[0, 3])  # row 0 emits this first, so it finishes at once
    out = model.generate(prompt, max_new_tokens=5, eos_id=eos)
    assert (out[0, 3:] == eos).all()
    for row in range(4):
        gen = out[row, 3:].tolist()
        if eos in gen:  # everything after the first eos is eos
            assert all(t == eos for t in gen[gen.index(eos) :])
        # until eos, the tokens are the unconstrained greedy ones
        stop = gen.index(eos) if eos in gen else len(gen)
        assert gen[:stop] == free[row, 3 : 3 + stop].tolist()


def test_generation_ends_early_once_every_row_has_emitted_eos():
    torch.manual_seed(0)
    model = build_model(_cfg()).eval()
    prompt = torch.randint(0, 20, (1, 3))
    eos = int(model.generate(prompt, max_new_tokens=1)[0, -1])
    assert model.generate(prompt, max_new_tokens=8, eos_id=eos).shape == (1, 4)

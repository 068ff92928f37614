"""Positional encodings: RoPE relativity, partial rotation, ALiBi slopes, T5 buckets."""

from __future__ import annotations

import math

import pytest
import torch

from bench.config import ModelConfig
from bench.model.positional import (
    POSITIONAL,
    ALiBi,
    Learned,
    RoPE,
    Sinusoidal,
    T5Bias,
    alibi_slopes,
    t5_bucket,
)


def _cfg(**kw) -> ModelConfig:
    base = dict(d_model=32, n_heads=2, n_layers=1, max_len=64)
    base.update(kw)
    return ModelConfig(**base)


def test_rope_scores_depend_only_on_the_relative_offset():
    torch.manual_seed(0)
    rope = RoPE(_cfg(pos_encoding="rope"), causal=True)
    t, hd = 24, 16
    q = torch.randn(hd).expand(1, 1, t, hd)  # the same query at every position
    k = torch.randn(hd).expand(1, 1, t, hd)
    rot = rope.rotary(t, q.device)
    scores = (rot(q) @ rot(k).transpose(-2, -1))[0, 0]
    for shift in (1, 5, 11):
        torch.testing.assert_close(
            scores[shift:, shift:], scores[:-shift, :-shift], atol=1e-5, rtol=1e-5
        )
    offsets = torch.stack([scores.diagonal(-o)[0] for o in range(8)])
    assert offsets.std() > 1e-3  # the score does change with the offset: positions are encoded


def test_rope_preserves_norms_and_leaves_position_zero_unrotated():
    rope = RoPE(_cfg(pos_encoding="rope"), causal=False)
    x = torch.randn(2, 2, 10, 16)
    y = rope.rotary(10, x.device)(x)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[:, :, 0], x[:, :, 0])


def test_partial_rope_rotates_an_even_fraction_and_leaves_the_rest_untouched():
    rope = RoPE(_cfg(pos_encoding="rope", rope_fraction=0.3), causal=True)  # head_dim 16
    assert rope.rot_dim == 4  # int(16 * 0.3) = 4, rounded down to even
    x = torch.randn(1, 2, 12, 16)
    y = rope.rotary(12, x.device)(x)
    torch.testing.assert_close(y[..., 4:], x[..., 4:], atol=0, rtol=0)
    assert not torch.allclose(y[..., 1:, :4], x[..., 1:, :4])


def test_rope_base_sets_the_frequencies():
    rope = RoPE(_cfg(pos_encoding="rope", rope_base=500.0), causal=True)
    expected = 500.0 ** (-torch.arange(0, 16, 2, dtype=torch.float64) / 16)
    torch.testing.assert_close(rope.inv_freq, expected.float())


def test_rope_extends_beyond_max_len_consistently():
    rope = RoPE(_cfg(pos_encoding="rope", max_len=8), causal=True)
    x = torch.randn(1, 1, 20, 16)
    long = rope.rotary(20, x.device)(x)
    short = rope.rotary(8, x.device)(x[:, :, :8])
    torch.testing.assert_close(long[:, :, :8], short)


def test_alibi_slopes_for_eight_heads_are_powers_of_one_half():
    assert alibi_slopes(8) == pytest.approx([2.0**-i for i in range(1, 9)])


def test_alibi_slopes_for_twelve_heads_interleave_the_sixteen_head_sequence():
    # Press et al.: the 8-head slopes, then every other slope of the 16-head sequence
    # (2^-0.5, 2^-1, 2^-1.5, ...), taking the first 12 - 8 = 4 of those.
    expected = [2.0**-i for i in range(1, 9)] + [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5]
    assert alibi_slopes(12) == pytest.approx(expected)


def test_alibi_slopes_for_four_heads_start_at_a_quarter():
    assert alibi_slopes(4) == pytest.approx([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8])


def test_alibi_bias_is_minus_slope_times_distance():
    dec = ALiBi(_cfg(n_heads=4), causal=True).bias(5, 5, torch.device("cpu"))
    enc = ALiBi(_cfg(n_heads=4), causal=False).bias(5, 5, torch.device("cpu"))
    slopes = alibi_slopes(4)
    for h in range(4):
        for i in range(5):
            for j in range(5):
                assert enc[h, i, j].item() == pytest.approx(-slopes[h] * abs(i - j))
                if j <= i:
                    assert dec[h, i, j].item() == pytest.approx(-slopes[h] * (i - j))


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 20), (16, 64)])
def test_t5_causal_buckets_are_monotone_in_distance_and_give_the_future_no_buckets(
    num_buckets, max_distance
):
    rel = torch.arange(-300, 301)
    b = t5_bucket(rel, bidirectional=False, num_buckets=num_buckets, max_distance=max_distance)
    past = b[rel <= 0].flip(0)  # distance 0, 1, 2, ...
    assert (past.diff() >= 0).all()
    assert past.min() == 0 and past.max() == num_buckets - 1
    assert (b[rel > 0] == b[rel == 0]).all()  # every future offset shares the offset-0 bucket
    exact = num_buckets // 2
    assert past[:exact].tolist() == list(range(exact))  # small distances are exact
    assert (past[max_distance:] == num_buckets - 1).all()  # far distances share the last bucket


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 20)])
def test_t5_bidirectional_buckets_split_by_direction_and_are_monotone_each_way(
    num_buckets, max_distance
):
    rel = torch.arange(-300, 301)
    b = t5_bucket(rel, bidirectional=True, num_buckets=num_buckets, max_distance=max_distance)
    before = b[rel <= 0].flip(0)
    after = b[rel > 0]
    assert (before.diff() >= 0).all() and (after.diff() >= 0).all()
    assert set(before.tolist()).isdisjoint(after.tolist())
    assert b.min() == 0 and b.max() == num_buckets - 1


def test_t5_bias_is_a_learned_table_lookup_per_head():
    t5 = T5Bias(_cfg(n_heads=2, t5_num_buckets=8, t5_max_distance=16), causal=True)
    bias = t5.bias(6, 6, torch.device("cpu"))
    assert bias.shape == (2, 6, 6)
    rel = torch.arange(6)[None, :] - torch.arange(6)[:, None]
    buckets = t5_bucket(rel, False, 8, 16)
    torch.testing.assert_close(bias, t5.table.weight[buckets].permute(2, 0, 1))
    bias.sum().backward()
    assert t5.table.weight.grad is not None and t5.table.weight.grad.abs().sum() > 0


def test_sinusoidal_table_matches_the_formula_and_extends_past_max_len():
    pe = Sinusoidal(_cfg(max_len=8), causal=True)
    y = pe.embed(torch.zeros(1, 12, 32))[0]
    for p in (0, 3, 11):
        for i in (0, 5, 15):
            angle = p / 10000 ** (2 * i / 32)
            assert y[p, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert y[p, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)


def test_learned_positions_refuse_sequences_longer_than_the_table():
    pe = Learned(_cfg(max_len=8), causal=True)
    with pytest.raises(ValueError, match="max_len"):
        pe.embed(torch.zeros(1, 9, 32))


def test_each_encoding_answers_how_long_a_sequence_it_supports():
    from bench.model import max_positions

    cfg = ModelConfig(max_len=48)
    assert POSITIONAL["learned"].max_positions(cfg) == 48  # the table ends there
    for name in POSITIONAL:
        expected = 48 if name == "learned" else None  # the others extend to any length
        assert max_positions(cfg.model_copy(update={"pos_encoding": name})) == expected

"""Landscape chunks: the measured chunk choice and its cache, attention folded under vmap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.config import ModelConfig, RunConfig
from bench.diagnostics.landscape import Plane, Surface, evaluate_plane, random_directions
from bench.diagnostics.landscape import evaluation as evaluation_module
from bench.diagnostics.landscape.chunking import CHUNKS, ChunkChoices
from bench.diagnostics.landscape.folded_attention import FoldedAttention
from bench.diagnostics.parameters import trainable_params
from bench.training.module import BenchModule

pytestmark = pytest.mark.usefixtures("one_thread")


class Workload:
    """``run(start, stop, chunk)`` over a virtual clock: each call costs ``per_call[chunk]``
    plus ``per_point[chunk]`` a point; records which points each call evaluated."""

    def __init__(self, per_call: dict[int, float], per_point: dict[int, float]) -> None:
        self.now = 0.0
        self.per_call, self.per_point = per_call, per_point
        self.calls: list[tuple[int, int]] = []  # (first point, chunk) of each call

    def clock(self) -> float:
        return self.now

    def run(self, start: int, stop: int, chunk: int) -> None:
        for s in range(start, stop, chunk):
            n = min(chunk, stop - s)
            self.calls.append((s, chunk))
            self.now += self.per_call[chunk] + n * self.per_point[chunk]


SIZES = (1, 4, 8, 16, 32, 64, 128)  # the candidates
ALL = (1, 2, *SIZES[1:])  # and the warm-up's chunk of 2


def covered(work: Workload, n: int) -> list[int]:
    """Every point index the calls evaluated, in order (a chunk's last may be short)."""
    out: list[int] = []
    for (s, chunk), nxt in zip(work.calls, [*work.calls[1:], (n, 0)], strict=True):
        out.extend(range(s, min(s + chunk, nxt[0])))
    return out


def test_the_measured_chunk_is_the_fastest_per_point_and_every_point_is_evaluated_once() -> None:
    # Calls cost 10 ms, points 1 ms inside a chunk of up to 16, 3 ms in larger ones.
    per_call = dict.fromkeys(ALL, 10e-3) | {1: 0.0}
    per_point = {1: 12e-3, 2: 1e-3, 4: 1e-3, 8: 1e-3, 16: 1e-3, 32: 3e-3, 64: 3e-3, 128: 3e-3}
    work = Workload(per_call, per_point)
    choices = ChunkChoices(SIZES, clock=work.clock)
    assert choices.evaluate("model", fit=1000, n_points=441, run=work.run) == 16
    assert covered(work, 441) == list(range(441))
    # 32 is 25% slower a point than 16, so 64 and 128 are never tried; the rest goes in 16s
    assert 64 not in {c for _, c in work.calls} and 128 not in {c for _, c in work.calls}
    assert all(chunk == 16 for s, chunk in work.calls if s >= 3 + 4 + 4 + 8 + 16 + 32)
    assert choices.chosen == {"model": 16}
    assert choices.timings["model"][16] == pytest.approx((10e-3 + 16e-3) / 16)


def test_chunks_slower_than_the_per_point_loop_are_never_chosen() -> None:
    per_call = dict.fromkeys(ALL, 0.0)
    per_point = {1: 1e-3} | dict.fromkeys(ALL[1:], 2e-3)
    work = Workload(per_call, per_point)
    choices = ChunkChoices(SIZES, clock=work.clock)
    assert choices.evaluate("model", fit=1000, n_points=200, run=work.run) == 1
    assert covered(work, 200) == list(range(200))


def test_the_choice_is_remembered_per_key_and_reused_without_measuring_again() -> None:
    per_call = dict.fromkeys(ALL, 10e-3) | {1: 0.0}
    per_point = dict.fromkeys(ALL, 1e-3) | {1: 12e-3}
    work = Workload(per_call, per_point)
    choices = ChunkChoices(SIZES, clock=work.clock)
    choices.evaluate("model", fit=1000, n_points=400, run=work.run)
    assert choices.chosen == {"model": 128}
    work.calls.clear()
    assert choices.evaluate("model", fit=1000, n_points=400, run=work.run) == 128
    assert [c for _, c in work.calls] == [128] * 4  # no measuring: chunks of 128 from point 0
    assert covered(work, 400) == list(range(400))
    work.calls.clear()
    choices.evaluate("other model", fit=1000, n_points=400, run=work.run)
    assert {c for _, c in work.calls} == set(ALL)  # another key is measured afresh
    assert set(choices.chosen) == {"model", "other model"}


def test_the_memory_budget_caps_the_candidates_and_a_short_run_is_not_remembered() -> None:
    per_call = dict.fromkeys(ALL, 10e-3) | {1: 0.0}
    per_point = dict.fromkeys(ALL, 1e-3) | {1: 12e-3}
    work = Workload(per_call, per_point)
    choices = ChunkChoices(SIZES, clock=work.clock)
    assert choices.evaluate("capped", fit=8, n_points=100, run=work.run) == 8
    assert max(c for _, c in work.calls) == 8 and choices.chosen == {"capped": 8}
    work.calls.clear()
    choices.evaluate("short", fit=1000, n_points=21, run=work.run)  # 4 and 8 fit, 16 does not
    assert covered(work, 21) == list(range(21)) and "short" not in choices.chosen


def small_module(**model: object) -> BenchModule:
    torch.manual_seed(0)
    base = dict(d_model=16, n_layers=2, n_heads=2, vocab_size=11, max_len=8, d_ff=32)
    return BenchModule(RunConfig(model=ModelConfig(**(base | model))))


def lm_batch(n: int = 4, t: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    x = torch.randint(0, 11, (n, t), generator=torch.Generator().manual_seed(seed))
    return {"input_ids": x, "labels": x.roll(1, 1)}


def loss_fn(m: torch.nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    return m.compute_loss(b)


def test_a_plane_measures_its_chunk_once_and_the_next_plane_of_the_model_reuses_it(
    monkeypatch,
) -> None:
    chunks: list[int] = []
    real_chunk = evaluation_module._Evaluator.chunk

    def spy(self, coords):  # the real evaluation, with the chunk sizes noted
        chunks.append(len(coords))
        return real_chunk(self, coords)

    monkeypatch.setattr(evaluation_module._Evaluator, "chunk", spy)
    CHUNKS.clear()
    module = small_module()
    params = trainable_params(module)
    d1, d2 = random_directions(params, seed=0)
    xs = np.linspace(-1, 1, 17)  # 289 points: room to measure every candidate chunk
    first = evaluate_plane(Surface(module, loss_fn, lm_batch()), Plane(params, d1, d2), xs, xs)
    assert len(CHUNKS.chosen) == 1
    (key, chosen), measured = next(iter(CHUNKS.chosen.items())), list(chunks)
    assert {2, 4} <= set(measured) and len(CHUNKS.timings[key]) >= 2
    chunks.clear()
    again = evaluate_plane(
        Surface(module, loss_fn, lm_batch(seed=1)), Plane(params, d2, d1), xs, xs
    )
    assert CHUNKS.chosen == {key: chosen}  # same model size, device and batch shapes
    if chosen == 1:
        assert chunks == []  # point by point: no vmap call
    else:
        assert set(chunks) <= {chosen, 289 % chosen}  # no measuring: chunks of the chosen size
    np.testing.assert_allclose(
        first,
        evaluate_plane(
            Surface(module, loss_fn, lm_batch()), Plane(params, d1, d2), xs, xs, batched=False
        ),
        atol=1e-6,
    )
    assert not np.array_equal(first, again)


def sdpa_per_example(q, k, v, mask, **kw):
    return torch.stack(
        [
            F.scaled_dot_product_attention(q[i], k[i], v[i], attn_mask=m, **kw)
            for i, m in enumerate(mask if mask is not None and mask.dim() == 5 else [mask] * len(q))
        ]
    )


@pytest.mark.parametrize(
    "case",
    ["causal", "mask shared", "mask per point", "gqa", "key shared"],
)
def test_folded_attention_under_vmap_equals_attention_point_by_point(case: str) -> None:
    g = torch.Generator().manual_seed(0)
    K, B, H, T, d = 3, 2, 4, 5, 8
    q, k, v = (torch.randn(K, B, H, T, d, generator=g) for _ in range(3))
    kw: dict = {"is_causal": case == "causal"}
    mask = None
    if case == "mask shared":
        mask = torch.randn(1, H, T, T, generator=g)
    if case == "mask per point":
        mask = torch.randn(K, 1, H, T, T, generator=g)
    if case == "gqa":
        k, v, kw = k[:, :, :2], v[:, :, :2], {"enable_gqa": True}
    if case == "key shared":
        k = k[:1].expand(K, *k.shape[1:])
    mask_dim = 0 if mask is not None and mask.dim() == 5 else None

    def attend(q, k, v, mask):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, **kw)

    dims = (0, None if case == "key shared" else 0, 0, mask_dim)
    k_in = k[0] if case == "key shared" else k
    with FoldedAttention():
        folded = torch.vmap(attend, in_dims=dims)(q, k_in, v, mask)
    torch.testing.assert_close(folded, sdpa_per_example(q, k, v, mask, **kw), atol=1e-6, rtol=0)


def test_folded_attention_passes_calls_with_dropout_to_sdpa_itself() -> None:
    q = torch.randn(2, 3, 4)
    torch.manual_seed(0)
    plain = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    torch.manual_seed(0)
    with FoldedAttention():
        mode = F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    assert torch.equal(plain, mode)

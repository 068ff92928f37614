"""A diagnostic never fails a run, and every diagnostics switch works on its own.

Every switch with every other two, in all eight on/off states of the three, trains a
real (tiny) run through ``train_run``: a covering array of strength 3 (12 runs) plus
all off and all on, instead of all 2^6 = 64 combinations. An interaction between
diagnostics goes through state two of them share (the entropy batch, the gradient
hooks, the stopwatch), so a fault needs at most three switches to show. A diagnostic
that raises is recorded in status.json and summary.json as ``diagnostic_errors`` and
the run completes.
"""

from __future__ import annotations

import itertools
import json
import logging

import numpy as np
import pytest

from bench import records
from bench.run import Run
from bench.training.run import train_run

SWITCHES = ("gradients", "noise_scale", "attention_entropy", "hessian", "landscape", "throughput")

# The cheapest run that still exercises every diagnostic: five optimizer steps
# (throughput skips three warm-up steps and needs two more for its window), one
# validation, a Hessian and a 3x3 landscape at the end.
CHEAP = {
    "model.d_model": 16,
    "model.n_layers": 1,
    "model.n_heads": 2,
    "task.seq_len": 4,
    "task.n_train": 32,
    "task.n_val": 8,
    "task.batch_size": 8,
    "task.eval_scales": [1],
    "train.max_steps": 5,
    "train.val_every": 5,
    "train.warmup_steps": 0,
    "diagnostics.gradients_every": 1,
    "diagnostics.hessian.steps": [1.0],
    "diagnostics.hessian.top_k": 1,
    "diagnostics.hessian.iters": 2,
    "diagnostics.landscape.resolution": 3,
    "diagnostics.landscape.batches": 1,
    "diagnostics.figures": True,  # what each switch draws is part of what it promises
}


def _switches(combo: tuple[bool, ...]) -> dict[str, bool]:
    return dict(zip(SWITCHES, combo, strict=True))


def _id(combo: tuple[bool, ...]) -> str:
    return "+".join(n for n, on in _switches(combo).items() if on) or "none"


# Rows of a covering array CA(12; 3, 6, 2): any three columns show all eight on/off states
# (found by a local search; test_the_combinations_cover_every_three_switches checks it).
COVERING = [
    "000010", "000111", "001001", "010100", "011000", "011111",
    "100101", "101010", "101100", "110001", "110110", "111011",
]  # fmt: skip
COMBOS = [(False,) * 6, (True,) * 6] + [tuple(c == "1" for c in row) for row in COVERING]


def test_the_combinations_cover_every_three_switches_in_every_state():
    for trio in itertools.combinations(range(len(SWITCHES)), 3):
        seen = {tuple(combo[i] for i in trio) for combo in COMBOS}
        assert len(seen) == 8, [SWITCHES[i] for i in trio]


@pytest.mark.parametrize("combo", COMBOS, ids=[_id(c) for c in COMBOS])
def test_every_combination_of_diagnostics_switches_completes_and_measures_what_is_on(tiny, combo):
    on = _switches(combo)
    cfg = tiny(**CHEAP, **{f"diagnostics.{k}": v for k, v in on.items()})
    result = train_run(cfg)

    assert result.status == "completed", result.reason
    summary = Run.load(result.run_dir).summary
    assert summary["diagnostic_errors"] == []
    assert Run.load(result.run_dir).status["diagnostic_errors"] == []
    d = result.run_dir / records.DIAGNOSTICS
    grads = d / "gradients.npz"
    assert grads.is_file() == (on["gradients"] or on["noise_scale"] or on["attention_entropy"])
    if grads.is_file():
        with np.load(grads) as z:
            keys = set(z["keys"].tolist())
            assert ("cond/grad_norm_total" in keys) == on["gradients"]
            assert ("cond/noise_scale" in keys) == on["noise_scale"]
            assert (len(z["entropy_steps"]) > 0) == on["attention_entropy"]
        assert (d / "grad_norm_depth.png").is_file() == on["gradients"]
        assert (d / "attn_entropy.png").is_file() == on["attention_entropy"]
    assert (d / "hessian_step5.npz").is_file() == on["hessian"]
    assert (d / "landscape_interp.npz").is_file() == on["landscape"]
    assert ("throughput/tokens_per_sec" in result.metrics) == on["throughput"]


def test_a_diagnostic_that_raises_is_recorded_and_the_run_completes(
    tiny, monkeypatch, caplog
) -> None:
    from bench.diagnostics.gradients import callback as gradients

    def broken(*args, **kwargs):
        raise RuntimeError("norms exploded")

    monkeypatch.setattr(gradients, "grad_norms", broken)
    cfg = tiny(**CHEAP, **{"diagnostics.hessian.enabled": True})
    with caplog.at_level(logging.WARNING, logger="bench.diagnostics"):
        result = train_run(cfg)

    assert result.status == "completed", result.reason
    expected = "gradients: on_before_optimizer_step: RuntimeError: norms exploded"
    summary = Run.load(result.run_dir).summary
    assert summary["diagnostic_errors"] == [expected]
    assert Run.load(result.run_dir).status["diagnostic_errors"] == [expected]
    assert expected in caplog.text  # a warning, once
    assert caplog.text.count("norms exploded") == 1
    # The failed diagnostic is switched off; the others still measured.
    assert not (result.run_dir / records.DIAGNOSTICS / "gradients.npz").exists()
    assert (result.run_dir / records.DIAGNOSTICS / "hessian_step5.npz").is_file()
    assert "throughput/tokens_per_sec" in result.metrics
    assert json.loads((result.run_dir / records.STATUS).read_text())["status"] == "completed"


def test_a_failing_end_of_run_landscape_is_recorded_and_the_run_completes(
    tiny, monkeypatch
) -> None:
    from bench.training import finish

    def broken(*args, **kwargs):
        raise MemoryError("no room for the plane")

    monkeypatch.setattr(finish, "landscape_of", broken)
    result = train_run(tiny(**CHEAP, **{"diagnostics.landscape.enabled": True}))
    assert result.status == "completed"
    errors = Run.load(result.run_dir).summary["diagnostic_errors"]
    assert errors == ["landscape: end of run: MemoryError: no room for the plane"]

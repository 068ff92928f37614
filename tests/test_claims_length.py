"""The two length-generalization claims judge what their files say.

Constructed samples (a few runs a cell, values like the pilots') go through the
shipped claim files and the real decision rule, so these tests pin what each file
decides: every outcome is reachable, and a comparison at chance cannot pass.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.claims import rules
from bench.claims.metrics import FLOOR, Sample, Samples
from bench.claims.spec import load_claim

CHANCE_2X = 0.137  # copy, 12 symbols, answer of 16 + the end token (known)


def cells(
    metric: str, values: dict[str, list[float]], bound: Callable[[float], str | None] | None = None
) -> Samples:
    """Samples of cells ``pos_encoding=<name>``; ``bound(value)`` marks a run at a bound."""
    out = Samples(metric)
    for pe, vs in values.items():
        for i, v in enumerate(vs):
            b = bound(v) if bound else None
            out.values.append(Sample(f"pos_encoding={pe}", {"pos_encoding": pe}, i, v, bound=b))
    return out


def at_floor(v: float) -> str | None:
    """Token accuracy at 2L within the default tolerance of chance, or worse."""
    return FLOOR if v <= CHANCE_2X + 0.02 * (1 - CHANCE_2X) else None


FITS = {pe: [0.97, 0.98, 0.99] for pe in ("nope", "t5", "alibi", "rope", "sinusoidal")}


def nope(acc_2x: dict[str, list[float]], acc_1x: dict[str, list[float]] = FITS) -> rules.Verdict:
    claim = load_claim("nope-length")
    return rules.judge(
        claim, {"acc_2x": cells("acc_2x", acc_2x, at_floor), "acc_1x": cells("acc_1x", acc_1x)}
    )


def test_nope_with_every_encoding_at_chance_at_2l_is_inconclusive_not_consistent():
    # Version 1 could pass with every encoding at chance; version 2 cannot inform there.
    at_chance = {pe: [0.13, 0.14, 0.135] for pe in FITS}
    verdict = nope(at_chance)
    assert verdict.status == rules.INCONCLUSIVE
    assert "some encoding is above chance at 2L" in verdict.reason


def test_nope_ahead_of_every_rival_at_2l_is_consistent_with_the_paper():
    verdict = nope(
        {
            "nope": [0.60, 0.62, 0.58],
            "t5": [0.40, 0.45, 0.42],
            "alibi": [0.30, 0.33, 0.31],
            "rope": [0.08, 0.09, 0.10],
            "sinusoidal": [0.07, 0.08, 0.06],
        }
    )
    assert verdict.status == rules.CONSISTENT, verdict.reason


def test_nope_behind_alibi_at_2l_as_in_the_pilot_is_not_reproduced():
    # The pilot (offset 91): ALiBi 0.85, NoPE 0.35, the rest at or below chance.
    verdict = nope(
        {
            "nope": [0.35, 0.33, 0.38],
            "t5": [0.065, 0.07, 0.06],
            "alibi": [0.85, 0.83, 0.87],
            "rope": [0.089, 0.09, 0.08],
            "sinusoidal": [0.076, 0.07, 0.08],
        }
    )
    assert verdict.status == rules.NOT_REPRODUCED
    assert "NoPE is more accurate at 2L than ALiBi" in verdict.reason
    failed = [r.spec.says for r in verdict.tests if r.status == rules.FAILS]
    assert failed == ["NoPE is more accurate at 2L than ALiBi"]


def test_nope_that_does_not_fit_the_training_length_makes_the_claim_inconclusive():
    fit = {**FITS, "nope": [0.94, 0.95, 0.945]}
    verdict = nope({pe: [0.5, 0.52, 0.51] for pe in FITS}, fit)
    assert verdict.status == rules.INCONCLUSIVE
    assert "fits the training length" in verdict.reason and "pos_encoding=nope" in verdict.reason


def alibi(degradation: dict[str, list[float]], context_gain: list[float]) -> rules.Verdict:
    claim = load_claim("alibi-extrapolation")
    loss_1x = cells("loss_1x", {pe: [2.4, 2.45, 2.5] for pe in degradation})
    return rules.judge(
        claim,
        {
            "degradation": cells("degradation", degradation),
            "loss_1x": loss_1x,
            "context_gain": cells("context_gain", {"alibi": context_gain}),
        },
    )


ORDERED = {  # loss at 4L minus at L (nats): sinusoidal, RoPE, ALiBi as in the pilot
    "sinusoidal": [0.85, 0.83, 0.86, 0.83],  # (offset 90); T5 between, as the paper says
    "rope": [0.88, 0.91, 1.11, 1.07],
    "t5": [0.15, 0.16, 0.14, 0.17],
    "alibi": [0.01, -0.01, 0.015, 0.007],
}


def test_alibi_ahead_of_every_rival_with_a_flat_sliding_window_is_consistent():
    verdict = alibi(ORDERED, [0.01, 0.005, 0.02, 0.012])
    assert verdict.status == rules.CONSISTENT, verdict.reason


def test_alibi_no_better_than_t5_fails_the_t5_between_test():
    verdict = alibi({**ORDERED, "t5": [0.01, 0.0, 0.012, 0.008]}, [0.01, 0.0, 0.02, 0.01])
    assert verdict.status == rules.NOT_REPRODUCED
    assert "ALiBi degrades less from L to 4L than the T5 bias" in verdict.reason


def test_alibi_gaining_from_longer_context_fails_the_control_and_is_inconclusive():
    # App. B predicts no gain past L under a sliding window; a clear gain (negative:
    # lower loss with more context) means the setup is not the paper's.
    verdict = alibi(ORDERED, [-0.12, -0.11, -0.13, -0.12])
    assert verdict.status == rules.INCONCLUSIVE
    assert verdict.reason.startswith("control failed")

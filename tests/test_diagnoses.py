"""Diagnosis rules: each fires on a constructed run that shows its failure and stays quiet
on one that does not; a failing rule never fails the caller.

Records are built as a run writes them: ``metrics.csv`` rows of floats keyed by step,
the flat resolved config and ``summary.json``'s baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import pytest

from bench.diagnoses import RULES, Diagnosis, Rule, RunRecords, diagnose, diagnose_run
from bench.diagnoses.attention import (
    COLLAPSE_NATS,
    LOGIT_GROWTH,
    LOGIT_LARGE,
    UNIFORM_FRACTION,
)
from bench.diagnoses.loss import LOG_Z_DRIFT, loss_spikes
from bench.diagnoses.optimization import (
    DEPTH_RATIO,
    NOISE_FACTOR,
    UPDATE_LOW,
)

CHANCE = 2.21  # reverse, 12 symbols, size 8
STEPS = 400


def records(
    series: Mapping[str, Sequence[tuple[int, float]] | Callable[[int], float]],
    *,
    every: int = 20,
    config: Mapping[str, object] | None = None,
    status: str = "completed",
    chance: float | None = CHANCE,
    uniform: float | None = None,
) -> RunRecords:
    """A run of ``STEPS`` steps; each series is a list of (step, value) or f(step) sampled
    every ``every`` steps from 0."""
    rows: list[dict[str, float]] = []
    for key, values in series.items():
        points = [(s, values(s)) for s in range(0, STEPS, every)] if callable(values) else values
        rows += [{"step": float(s), key: float(v)} for s, v in points]
    cfg = {
        "train.max_steps": STEPS,
        "train.lr": 1e-2,
        "train.warmup_steps": 20,
        "task.batch_size": 32,
        **(config or {}),
    }
    summary = {"baseline": {"val/loss": chance}} if chance is not None else {}
    if uniform is not None:
        summary.setdefault("baseline", {})["uniform/val/loss"] = uniform
    return RunRecords(rows, cfg, summary, status)


def fires(name: str, rec: RunRecords) -> str | None:
    d = RULES[name].diagnose(rec)
    return d.evidence if d else None


def learning_loss(step: int) -> float:
    """A smooth descent from chance to near zero, with batch noise of a few percent."""
    return CHANCE * math.exp(-step / 80) + 0.02 + 0.03 * math.sin(step)


# ----------------------------------------------------------------------------- the registry


def test_every_rule_says_what_it_reads_its_paper_and_what_to_try():
    assert len(RULES) >= 9
    for name, rule in RULES.items():
        assert rule.name == name
        assert rule.title and rule.reads and rule.advice
        assert any(ch.isdigit() for ch in rule.paper), f"{name}: cite the paper with its year"


def test_a_rule_that_raises_is_skipped_and_the_others_still_diagnose():
    class Broken(Rule):
        name, title, reads, paper, advice = "broken", "broken", ("x",), "none 2024", "none"

        def evidence(self, rec: RunRecords) -> str | None:
            raise RuntimeError("boom")

    rec = records({"train/loss": lambda s: CHANCE}, status="diverged")
    found = diagnose(rec, {"broken": Broken(), "loss_spikes": RULES["loss_spikes"]})
    assert [d.rule for d in found] == ["loss_spikes"]


def test_a_diagnosis_round_trips_through_a_dict_and_reads_as_one_line():
    d = Diagnosis("r", "title", "the evidence 2.07", "paper 2020", "init=auto")
    assert Diagnosis.from_dict(d.as_dict()) == d
    assert d.line() == "title: the evidence 2.07; try init=auto"


# ----------------------------------------------------------------------------- 1 depth


def depth_run(ratio_at_init: float, ratio_later: float) -> RunRecords:
    return records(
        {
            "cond/grad_norm/block_0": lambda s: ratio_at_init if s == 0 else ratio_later,
            "cond/grad_norm/block_1": lambda s: 1.0,
            "cond/grad_norm/block_0/attn": lambda s: 100.0,  # sublayers are not blocks
        }
    )


def test_ill_conditioned_depth_fires_on_a_20x_first_to_last_block_gradient_at_init():
    ev = fires("ill_conditioned_depth", depth_run(20.0, 3.0))
    assert ev is not None and "block_0 is 20x block_1 at init" in ev
    # the other direction counts too (post-LN's gradient grows toward the output)
    assert fires("ill_conditioned_depth", depth_run(1 / 20, 1 / 15)) is not None


def test_ill_conditioned_depth_is_quiet_within_the_factor():
    assert fires("ill_conditioned_depth", depth_run(DEPTH_RATIO * 0.8, 2.0)) is None


# ----------------------------------------------------------------------------- 2 uniform


def attention_run(entropy: Callable[[int], float], uniform: float = 2.08) -> RunRecords:
    return records(
        {
            "cond/attn_entropy/layer_0": entropy,
            "cond/attn_entropy_uniform/layer_0": lambda s: uniform,
        }
    )


def test_uniform_attention_fires_when_entropy_stays_at_its_maximum_early():
    rec = attention_run(lambda s: 2.07 if s < 200 else 1.0)
    ev = fires("uniform_attention", rec)
    assert ev is not None
    assert "layer_0 stayed uniform for the first 180 steps" in ev and "of max 2.08" in ev


def test_uniform_attention_is_quiet_when_attention_forms_within_the_first_part():
    rec = attention_run(lambda s: 2.07 if s < 60 else 2.08 * (UNIFORM_FRACTION - 0.1))
    assert fires("uniform_attention", rec) is None


def test_uniform_attention_advice_names_the_init_problem_of_the_config():
    rec = records(
        {
            "cond/attn_entropy/layer_0": lambda s: 2.07,
            "cond/attn_entropy_uniform/layer_0": lambda s: 2.08,
        },
        config={
            "model.norm_placement": "post",
            "model.init": "gpt2",
            "model.embed_scale": "none",
            "model.d_model": 32,
        },
    )
    d = RULES["uniform_attention"].diagnose(rec)
    assert d is not None and d.advice.startswith("init=auto") and "RMS" in d.advice


# ----------------------------------------------------------------------------- 3 collapse


def collapse_run(loss: Callable[[int], float], entropy_min: float = 0.02) -> RunRecords:
    return records(
        {
            "cond/attn_entropy_min/layer_1": lambda s: 1.5 if s < 200 else entropy_min,
            "train/loss": loss,
        },
        every=10,
    )


def spiky(step: int) -> float:
    return 3.0 if step == 250 else learning_loss(step)


def test_entropy_collapse_fires_when_a_head_collapses_and_the_loss_spikes():
    ev = fires("entropy_collapse", collapse_run(spiky))
    assert ev is not None and "layer_1" in ev and "step 250" in ev


def test_entropy_collapse_fires_when_a_head_collapses_and_the_run_diverges():
    rec = collapse_run(learning_loss)
    rec = RunRecords(rec.rows, rec.config, rec.summary, "diverged")
    assert "diverged" in (fires("entropy_collapse", rec) or "")


def test_entropy_collapse_fires_when_a_head_turns_one_hot_before_the_loss_moved():
    rec = records(
        {
            "cond/attn_entropy_min/layer_0": lambda s: 1.5 if s < 20 else 1e-6,
            "val/loss": lambda s: 13.0 if s < 40 else CHANCE * 1.05,  # blew up, back at chance
        },
        every=10,
    )
    ev = fires("entropy_collapse", rec) or ""
    assert "at step 20" in ev and "val/loss was 13 at step 20" in ev
    # the same head turning one-hot once the task is solved (copy) is no collapse
    solved = records(
        {
            "cond/attn_entropy_min/layer_0": lambda s: 1.5 if s < 200 else 0.01,
            "val/loss": lambda s: CHANCE if s < 100 else 0.02,
        },
        every=10,
    )
    assert fires("entropy_collapse", solved) is None


def test_a_sharp_head_in_a_run_that_trains_smoothly_is_no_collapse():
    assert fires("entropy_collapse", collapse_run(learning_loss)) is None
    assert fires("entropy_collapse", collapse_run(spiky, entropy_min=COLLAPSE_NATS * 2)) is None


# ----------------------------------------------------------------------------- 4 logit growth


def test_attention_logit_growth_fires_on_orders_of_magnitude_to_a_large_logit():
    rec = records({"cond/attn_logit_max/layer_0": lambda s: 3.0 * 10 ** (s / 130)})
    ev = fires("attention_logit_growth", rec)
    assert ev is not None and "layer_0" in ev and "from 3 at step 0" in ev


def test_attention_logit_growth_needs_both_growth_and_a_large_logit():
    small_start = records({"cond/attn_logit_max/layer_0": lambda s: 1e-4 * 10 ** (s / 100)})
    assert fires("attention_logit_growth", small_start) is None  # 1e-4 -> 0.8: harmless
    already_large = records({"cond/attn_logit_max/layer_0": lambda s: LOGIT_LARGE * 2})
    assert fires("attention_logit_growth", already_large) is None  # no growth
    assert LOGIT_GROWTH > 1


# ----------------------------------------------------------------------------- 5 output logits


def test_output_logit_divergence_fires_when_log_z_drifts():
    rec = records(
        {
            "cond/log_z_mean": lambda s: 2.5 - s / 10,
            "cond/output_logit_mean": lambda s: -s / 10,
            "cond/output_logit_max": lambda s: 5.0,
        }
    )
    ev = fires("output_logit_divergence", rec)
    assert ev is not None and "from 2.5 at step 0" in ev and "mean logit" in ev


def test_confident_predictions_are_no_output_logit_divergence():
    rec = records({"cond/log_z_mean": lambda s: 2.5 + (LOG_Z_DRIFT - 5) * s / STEPS})
    assert fires("output_logit_divergence", rec) is None


# ----------------------------------------------------------------------------- 6 update size


def test_update_size_fires_for_a_block_far_below_the_band_and_reads_no_upper_side():
    low = records({"cond/update_ratio/block_0": lambda s: UPDATE_LOW / 10})
    assert "too low" in (fires("update_size", low) or "")
    assert "higher learning rate than 0.01" in RULES["update_size"].diagnose(low).advice
    # Adam's relative step stays near lr / weight RMS: a large ratio does not tell a high lr
    assert fires("update_size", records({"cond/update_ratio/block_1": lambda s: 0.5})) is None


def test_update_size_ignores_warmup_and_non_block_groups():
    rec = records(
        {
            "cond/update_ratio/block_0": lambda s: 1e-7 if s < 20 else 0.03,
            "cond/update_ratio/embed": lambda s: 1e-7,
            "cond/update_ratio_total": lambda s: 1e-7,
        }
    )
    assert fires("update_size", rec) is None


# ----------------------------------------------------------------------------- 7 sharpness


def sharpness_run(lam: float, lr: float = 1e-2) -> RunRecords:
    return records({"hessian/lambda_max": [(0, 1.0), (399, lam)], "lr": lambda s: lr}, every=10)


def test_sharpness_above_two_over_lr_is_past_the_edge_of_stability():
    ev = fires("sharpness_vs_lr", sharpness_run(500.0))  # 2 / 1e-2 = 200
    assert ev is not None and "above 2/lr = 200" in ev


def test_sharpness_far_below_two_over_lr_fires_and_near_it_does_not():
    assert "below" in (fires("sharpness_vs_lr", sharpness_run(0.05)) or "")  # 4000x
    assert fires("sharpness_vs_lr", sharpness_run(0.5)) is None  # 400x: a flat landscape
    assert fires("sharpness_vs_lr", sharpness_run(50.0)) is None


def test_too_small_a_step_is_judged_at_the_sharpest_measurement_against_the_peak_lr():
    def decayed(s: int) -> float:  # cosine to lr/10 at the end
        return 1e-3 + 9e-3 * 0.5 * (1 + math.cos(math.pi * s / STEPS))

    # 1 at the end is 2000x below 2/lr at the decayed lr 1e-3, but only 200x at the peak
    end_only = records({"hessian/lambda_max": [(399, 1.0)], "lr": decayed}, every=10)
    assert fires("sharpness_vs_lr", end_only) is None
    # a flat end after a sharper middle is no sign of too small a step either
    sharper = records({"hessian/lambda_max": [(200, 10.0), (399, 0.1)], "lr": decayed}, every=10)
    assert fires("sharpness_vs_lr", sharper) is None
    far = records({"hessian/lambda_max": [(200, 0.05), (399, 0.04)], "lr": decayed}, every=10)
    assert "4000x below 2/lr = 200 at the peak lr 0.01" in (fires("sharpness_vs_lr", far) or "")


def test_a_flat_minimum_of_a_run_that_learned_is_not_too_small_a_step():
    rec = sharpness_run(0.06)  # pre-LN on the quickstart at its end, val/loss 0.0008
    learned = RunRecords(rec.rows, rec.config, {**rec.summary, "learning": {"status": "learned"}})
    assert fires("sharpness_vs_lr", learned) is None


def test_sharpness_during_warmup_is_not_judged():
    rec = records({"hessian/lambda_max": [(0, 1e4)], "lr": lambda s: 1e-2}, every=10)
    assert fires("sharpness_vs_lr", rec) is None


# ----------------------------------------------------------------------------- 8 noise scale


def test_batch_far_below_or_above_the_noise_scale_fires():
    big_noise = records({"cond/noise_scale": lambda s: 32 * NOISE_FACTOR * 3})
    assert "larger batch" in RULES["batch_vs_noise_scale"].diagnose(big_noise).advice
    small_noise = records({"cond/noise_scale": lambda s: 32 / NOISE_FACTOR / 3})
    assert "smaller batch" in RULES["batch_vs_noise_scale"].diagnose(small_noise).advice


def test_a_small_noise_scale_in_an_unstable_run_is_not_read_as_too_large_a_batch():
    small_noise = {"cond/noise_scale": lambda s: 32 / NOISE_FACTOR / 3}
    past_edge = records({**small_noise, "hessian/lambda_max": [(200, 500.0)], "lr": lambda s: 1e-2})
    assert fires("batch_vs_noise_scale", past_edge) is None  # 500 > 2/lr = 200
    spiked = records({**small_noise, "train/loss": spiky}, every=10)
    assert fires("batch_vs_noise_scale", spiked) is None
    stable = records({**small_noise, "hessian/lambda_max": [(200, 5.0)], "lr": lambda s: 1e-2})
    assert fires("batch_vs_noise_scale", stable) is not None


def test_batch_near_the_noise_scale_or_without_measurements_is_quiet():
    assert fires("batch_vs_noise_scale", records({"cond/noise_scale": lambda s: 60.0})) is None
    # early values do not count: the noise scale grows as training proceeds
    early_only = records({"cond/noise_scale": [(0, 1e5), (20, 1e5)]})
    assert fires("batch_vs_noise_scale", early_only) is None


# ----------------------------------------------------------------------------- 9 loss


def test_loss_spikes_fire_on_a_jump_and_on_divergence():
    ev = fires("loss_spikes", records({"train/loss": spiky}, every=10))
    assert ev is not None and "step 250" in ev
    flat = records({"train/loss": learning_loss}, every=10, status="diverged")
    assert "non-finite" in (fires("loss_spikes", flat) or "")


def test_a_loss_twice_what_knowing_nothing_scores_is_a_spike_whatever_came_before():
    blow_up = {"train/loss": lambda s: 10.0 if s < 30 else 2.5}  # from the first logged step
    rec = records(blow_up, every=10, uniform=2.77)
    assert [(sp.step, sp.value) for sp in loss_spikes(rec)] == [(0, 10.0), (10, 10.0), (20, 10.0)]
    ev = fires("loss_spikes", rec) or ""
    assert "reached 10 at step 0, over twice the 2.77 of a model that knows nothing" in ev
    assert loss_spikes(records(blow_up, every=10)) == []  # no know-nothing loss recorded
    # a run that trains smoothly starts near that loss and falls
    smooth = records({"train/loss": lambda s: 1.2 * 2.77 * math.exp(-s / 80)}, uniform=2.77)
    assert loss_spikes(smooth) == []


def test_batch_noise_near_zero_loss_is_no_spike():
    # 0.01 -> 0.05 is a 5x jump but 0.04 nats: far below 20% of chance
    rec = records({"train/loss": lambda s: 0.05 if s == 250 else 0.01}, every=10)
    assert loss_spikes(rec) == []
    assert fires("loss_spikes", records({"train/loss": learning_loss}, every=10)) is None


def test_chance_plateau_fires_when_val_loss_sits_at_chance_for_half_the_run():
    rec = records({"val/loss": lambda s: 2.6 if s == 0 else CHANCE + 0.01}, every=25)
    ev = fires("chance_plateau", rec)
    assert ev is not None and "chance (2.21) from step 25 to 375" in ev


def test_chance_plateau_fires_when_val_loss_never_leaves_its_first_value_above_chance():
    rec = records({"val/loss": lambda s: 3.9 - s * 1e-5}, every=25)  # lr far too low
    ev = fires("chance_plateau", rec) or ""
    assert "its first value (3.9, above chance 2.21) from step 0 to 375" in ev
    # a run that falls from a high start to chance within the first steps sits at chance
    falls = records({"val/loss": lambda s: 12.0 if s == 0 else CHANCE}, every=25)
    assert "stayed at chance" in (fires("chance_plateau", falls) or "")


def test_a_run_that_leaves_chance_early_or_has_no_baseline_has_no_plateau():
    leaves = records({"val/loss": lambda s: CHANCE if s < 100 else 0.5}, every=25)
    assert fires("chance_plateau", leaves) is None
    unknown = records({"val/loss": lambda s: CHANCE}, every=25, chance=None)
    assert fires("chance_plateau", unknown) is None


# ----------------------------------------------------------------------------- reading runs


def test_diagnose_run_prefers_the_recorded_diagnoses_and_reads_records_otherwise(tmp_path):
    import json

    (tmp_path / "config.yaml").write_text("train: {max_steps: 400}\n")
    (tmp_path / "metrics.csv").write_text(
        "step,train/loss\n"
        + "".join(f"{s},{2.0 if s != 250 else 9.0}\n" for s in range(0, 400, 10))
    )
    (tmp_path / "status.json").write_text(json.dumps({"status": "completed"}))
    assert [d.rule for d in diagnose_run(tmp_path)] == ["loss_spikes"]
    recorded = Diagnosis("uniform_attention", "uniform attention", "e", "p 2020", "a")
    (tmp_path / "summary.json").write_text(json.dumps({"diagnoses": [recorded.as_dict()]}))
    assert diagnose_run(tmp_path) == [recorded]


@pytest.mark.parametrize("missing", ["everything", "metrics"])
def test_diagnose_run_of_an_empty_or_partial_directory_finds_nothing(tmp_path, missing):
    if missing == "metrics":
        (tmp_path / "config.yaml").write_text("train: {max_steps: 10}\n")
    assert diagnose_run(tmp_path) == []

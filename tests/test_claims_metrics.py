"""One number per run: which runs count, what a failed run counts as (one policy per
metric), the bounds a run sits at, LR sensitivity by hand."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from bench.claims.metrics import CEILING, FLOOR, run_samples
from bench.claims.spec import MetricSpec
from bench.report.collect import SweepData
from bench.sweeps.spec import SweepSpec

CHANCE = {"val/loss": 2.5, "val/loss@32": 2.5, "val/loss@128": 2.5, "uniform/val/loss": 5.5}


def row(cell: str, seed: int, status: str = "completed", phase: str = "seed", **metrics):
    axes = dict(kv.split("=") for kv in cell.split(","))
    return {"phase": phase, "cell": cell, "seed": seed, "status": status, "reason": "",
            "metrics": metrics, "baseline": CHANCE, "run_dir": "", **axes}  # fmt: skip


def sweep(rows: list[dict], axes: list[str], tuned: bool = True) -> SweepData:
    lr = {"train.lr": {"low": 1e-3, "high": 1e-1, "log": True}}
    spec = SweepSpec.model_validate(
        {
            "name": "s",
            "compare": {a: ["a"] for a in axes},
            **({"tune": {"params": lr}} if tuned else {}),
        }
    )
    return SweepData(name="s", dir=Path("."), meta={}, spec=spec, spec_text="", axes=axes,
                     axis_keys={a: a for a in axes}, cells=[], tuned=[], objective="val/loss",
                     direction="minimize", rows=rows, train_length=32)  # fmt: skip


def test_seed_runs_count_and_tuning_runs_only_when_nothing_was_tuned():
    rows = [row("pe=a", 0, phase="tune", **{"val/loss": 9.0}), row("pe=a", 1, **{"val/loss": 1.0})]
    tuned = run_samples(sweep(rows, ["pe"], tuned=True), "m", MetricSpec(key="val/loss"))
    assert [s.value for s in tuned.values] == [1.0]  # the selected tuning run is not a seed
    untuned = run_samples(sweep(rows, ["pe"], tuned=False), "m", MetricSpec(key="val/loss"))
    assert sorted(s.value for s in untuned.values) == [1.0, 9.0]


def test_worst_counts_a_diverged_run_as_the_worse_of_chance_and_the_worst_completed_run():
    rows = [
        row("pe=a", 1, **{"val/loss": 1.0}),
        row("pe=b", 1, **{"val/loss": 3.0}),  # stalled above chance (2.5)
        row("pe=a", 2, status="diverged"),
        row("pe=a", 3, status="failed"),
    ]
    s = run_samples(sweep(rows, ["pe"]), "m", MetricSpec(key="val/loss"))
    assert sorted(x.value for x in s.values) == [1.0, 3.0, 3.0]
    diverged = next(x for x in s.values if x.seed == 2)
    stalled = next(x for x in s.values if x.cell == "pe=b")
    assert diverged.value >= stalled.value  # a diverged run never beats one that stalled
    assert diverged.bound == FLOOR
    assert any("diverged: counted as the worst value (3)" in n for n in s.notes)
    assert any("seed 3: failed: left out" in n for n in s.notes)  # a crash is not a result
    assert "worse of chance and the worst value" in s.policy


def test_worst_is_chance_when_every_completed_run_beat_it():
    rows = [row("pe=a", 1, **{"val/loss": 1.0}), row("pe=a", 2, status="pruned")]
    s = run_samples(sweep(rows, ["pe"]), "m", MetricSpec(key="val/loss"))
    assert sorted(x.value for x in s.values) == [1.0, 2.5]


def test_worst_of_a_difference_is_not_a_perfect_zero():
    # chance is the same at every length, so chance's degradation is 0: a perfect score
    rows = [
        row("pe=a", 1, **{"val/loss@32": 1.0, "val/loss@128": 1.9}),
        row("pe=a", 2, status="diverged"),
    ]
    spec = MetricSpec(key="val/loss@4x", minus="val/loss@1x")
    values = sorted(x.value for x in run_samples(sweep(rows, ["pe"]), "m", spec).values)
    assert values == pytest.approx([0.9, 0.9])


def test_worst_of_a_higher_is_better_metric_is_the_lowest():
    rows = [
        row("pe=a", 1, **{"val/acc": 0.9}),
        row("pe=a", 2, **{"val/acc": 0.05}),  # below chance (0.1)
        row("pe=a", 3, status="diverged"),
    ]
    rows = [{**r, "baseline": {"val/acc": 0.1}} for r in rows]
    spec = MetricSpec(key="val/acc", lower_is_better=False)
    assert sorted(x.value for x in run_samples(sweep(rows, ["pe"]), "m", spec).values) == [
        0.05, 0.05, 0.9,
    ]  # fmt: skip


def test_exclude_leaves_a_diverged_run_out_and_names_it():
    rows = [row("pe=a", 1, **{"val/loss": 1.0}), row("pe=a", 2, status="diverged")]
    s = run_samples(sweep(rows, ["pe"]), "m", MetricSpec(key="val/loss", on_failure="exclude"))
    assert [x.value for x in s.values] == [1.0]
    assert any("seed 2: diverged: left out (on_failure: exclude)" in n for n in s.notes)


def test_init_cap_counts_a_diverged_run_at_the_loss_at_initialization():
    rows = [
        row("qk=false,lr=0.001", 1, **{"val/loss": 2.0}),
        row("qk=false,lr=0.1", 1, status="diverged"),
    ]
    spec = MetricSpec(key="val/loss", over="lr", reduce="lr_sensitivity")
    assert spec.failure_policy == "init_cap"
    s = run_samples(sweep(rows, ["qk", "lr"]), "m", spec)
    (only,) = s.values
    assert only.value == pytest.approx(((2.0 - 2.0) + (5.5 - 2.0)) / 2)  # l0 = ln V = 5.5
    assert "ln V of the uniform predictor" in s.policy


def test_runs_at_the_best_value_sit_at_the_ceiling_and_runs_at_chance_at_the_floor():
    rows = [
        row("pe=a", 1, **{"val/loss": 0.01}),  # tol = 2% of |2.5 - 0| = 0.05
        row("pe=a", 2, **{"val/loss": 0.2}),
        row("pe=a", 3, **{"val/loss": 2.47}),
        row("pe=a", 4, **{"val/loss": 2.9}),  # worse than chance: at the floor too
    ]
    s = run_samples(sweep(rows, ["pe"]), "m", MetricSpec(key="val/loss", best=0.0))
    assert [x.bound for x in s.values] == [CEILING, None, FLOOR, FLOOR]
    wide = run_samples(sweep(rows, ["pe"]), "m", MetricSpec(key="val/loss", best=0.0,
                                                            bound_tol=0.3))  # fmt: skip
    assert [x.bound for x in wide.values] == [CEILING, CEILING, FLOOR, FLOOR]
    unbounded = run_samples(sweep(rows, ["pe"]), "m", MetricSpec(key="val/loss"))
    assert all(x.bound is None for x in unbounded.values)  # no best: no tolerance


def test_a_difference_is_at_a_bound_only_when_both_its_components_are():
    rows = [
        row("pe=a", 1, **{"val/loss@32": 0.01, "val/loss@128": 0.02}),
        row("pe=a", 2, **{"val/loss@32": 0.01, "val/loss@128": 2.6}),
        row("pe=a", 3, **{"val/loss@32": 2.6, "val/loss@128": 2.6}),
    ]
    spec = MetricSpec(key="val/loss@4x", minus="val/loss@1x", best=0.0)
    assert [x.bound for x in run_samples(sweep(rows, ["pe"]), "m", spec).values] == [
        CEILING, None, FLOOR,
    ]  # fmt: skip


def test_length_keys_scale_with_the_training_length_and_minus_subtracts():
    rows = [row("pe=a", 1, **{"val/loss@32": 1.0, "val/loss@128": 1.75})]
    spec = MetricSpec(key="val/loss@4x", minus="val/loss@1x")
    assert [x.value for x in run_samples(sweep(rows, ["pe"]), "m", spec).values] == [0.75]


def test_lr_sensitivity_follows_wortsman_per_group_and_seed():
    # qk=false, seed 1: losses 3.0, 2.0, 8.0 (above l0 = 5.5, capped) over three lrs
    losses = {("false", 1): [3.0, 2.0, 8.0], ("true", 1): [2.2, 2.0, 2.1]}
    rows = [
        row(f"qk={qk},lr={lr}", seed, **{"val/loss": v})
        for (qk, seed), vals in losses.items()
        for lr, v in zip(["0.001", "0.01", "0.1"], vals, strict=True)
    ]
    spec = MetricSpec(key="val/loss", over="lr", reduce="lr_sensitivity")
    got = {s.axes["qk"]: s.value for s in run_samples(sweep(rows, ["qk", "lr"]), "m", spec).values}
    assert got["false"] == pytest.approx(((3.0 - 2.0) + 0 + (5.5 - 2.0)) / 3)
    assert got["true"] == pytest.approx((0.2 + 0 + 0.1) / 3)


def test_a_seed_missing_one_learning_rate_is_left_out_of_lr_sensitivity():
    rows = [row("qk=false,lr=0.001", 1, **{"val/loss": 3.0})]
    rows += [
        row("qk=false,lr=0.1", 2, **{"val/loss": 3.0}),
        row("qk=false,lr=0.001", 2, **{"val/loss": 2.0}),
    ]
    spec = MetricSpec(key="val/loss", over="lr", reduce="lr_sensitivity")
    s = run_samples(sweep(rows, ["qk", "lr"]), "m", spec)
    assert [x.seed for x in s.values] == [2]
    assert any("seed 1: no run at lr=[0.1]" in n for n in s.notes)


def test_step_metrics_reduce_over_layers_and_steps_of_metrics_csv(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["step", "cond/attn_logit_max/0", "cond/attn_logit_max/1"])
        w.writeheader()
        w.writerows([{"step": 0, "cond/attn_logit_max/0": 1.0, "cond/attn_logit_max/1": 2.0},
                     {"step": 10, "cond/attn_logit_max/0": 40.0, "cond/attn_logit_max/1": ""}])  # fmt: skip
    r = {**row("pe=a", 1, status="diverged"), "run_dir": str(run)}
    top = MetricSpec(key="cond/attn_logit_max/*", steps="max")
    low = MetricSpec(key="cond/attn_logit_max/*", steps="min")
    assert top.failure_policy == "recorded"  # a diverged run counts with what it logged
    got = run_samples(sweep([r], ["pe"]), "m", top)
    assert got.values[0].value == 40.0
    assert any("diverged: counted with its values up to the failure" in n for n in got.notes)
    assert run_samples(sweep([r], ["pe"]), "m", low).values[0].value == 1.0


def test_log10_judges_each_runs_logarithm_and_leaves_out_a_value_it_is_undefined_for():
    rows = [
        row("qk=false", 1, **{"m": 1.0e4}),
        row("qk=false", 2, **{"m": 100.0}),
        row("qk=false", 3, **{"m": 0.0}),
    ]
    s = run_samples(sweep(rows, ["qk"]), "m", MetricSpec(key="m", transform="log10"))
    assert sorted(x.value for x in s.values) == pytest.approx([2.0, 4.0])
    assert any("seed 3: 0 <= 0 has no log10; left out" in n for n in s.notes)


def test_log10_applies_after_lr_sensitivity_is_formed_per_seed():
    rows = [
        row(f"qk=false,lr={lr}", 1, **{"val/loss": v}) for lr, v in [("0.001", 2.0), ("0.1", 4.0)]
    ]
    spec = MetricSpec(key="val/loss", over="lr", reduce="lr_sensitivity", transform="log10")
    (only,) = run_samples(sweep(rows, ["qk", "lr"]), "m", spec).values
    assert only.value == pytest.approx(math.log10((0.0 + 2.0) / 2))

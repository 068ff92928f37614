"""The symptom gate: a rule's finding is a diagnosis, with advice, only on a run that shows
a symptom of bad training and only for a rule that passed its measurement; otherwise a
watch, with no advice. Records are built as a run writes them (``metrics.csv`` rows, the
flat config, ``summary.json``'s baseline and learning verdict)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping

import pytest

from bench.diagnoses import RULES, WATCH, Diagnosis, RunRecords, diagnose, diagnose_run, split
from bench.diagnoses import measured as measured_mod
from bench.diagnoses.measured import MIN_PRECISION, MIN_RECALL, Measured, demotion
from bench.diagnoses.symptoms import symptom
from bench.tracking import diagnosis_summary

CHANCE = 2.21  # reverse, 12 symbols, size 8
STEPS = 400
PASSES = Measured(planted=10, fired=10, hits=10, healthy_alarms=0)


def run(
    series: Mapping[str, Callable[[int], float]],
    *,
    learning: str | None,
    every: int = 10,
    status: str = "completed",
) -> RunRecords:
    rows = [
        {"step": float(s), **{k: float(f(s)) for k, f in series.items()}}
        for s in range(0, STEPS, every)
    ]
    summary: dict[str, object] = {"baseline": {"val/loss": CHANCE}}
    if learning:
        summary["learning"] = {"status": learning}
    cfg = {"train.max_steps": STEPS, "train.lr": 1e-2, "train.warmup_steps": 20}
    return RunRecords(rows, cfg, summary, status)


def learns(s: int) -> float:
    return CHANCE * math.exp(-s / 60) + 0.01


def at_chance(s: int) -> float:
    return CHANCE + 0.02 * math.sin(s)


def growing_logits(s: int) -> float:
    return 4.0 * 10 ** (s / 250)  # 4 at init to 157 at the end: a one-hot reversal head


@pytest.fixture
def growth_passes(monkeypatch):
    """The logit-growth rule as if its measurement had cleared the bar."""
    monkeypatch.setitem(measured_mod.MEASURED, "attention_logit_growth", PASSES)


def test_a_healthy_run_that_learned_with_large_attention_logits_gets_a_watch_not_a_diagnosis(
    growth_passes,
):
    rec = run(
        {"train/loss": learns, "val/loss": learns, "cond/attn_logit_max/layer_0": growing_logits},
        learning="learned",
    )
    assert symptom(rec) is None
    d = RULES["attention_logit_growth"].diagnose(rec)
    assert d is not None and d.kind == WATCH
    assert "try" not in d.line() and "qk_norm" not in d.line()  # no advice to change it
    assert "(watch)" in d.line() and "the run learned" in d.why
    diagnoses, watches = split(diagnose(rec))
    assert diagnoses == [] and [w.rule for w in watches] == ["attention_logit_growth"]


def test_the_same_records_with_a_loss_that_stayed_at_chance_get_the_diagnosis(growth_passes):
    rec = run(
        {
            "train/loss": at_chance,
            "val/loss": at_chance,
            "cond/attn_logit_max/layer_0": growing_logits,
        },
        learning="did_not_learn",
    )
    assert symptom(rec) == "the run did not learn (did not learn)"
    d = RULES["attention_logit_growth"].diagnose(rec)
    assert d is not None and d.kind == "diagnosis"
    assert d.line().endswith("try " + d.advice) and "qk_norm=true" in d.advice
    assert d.why == "the run did not learn (did not learn)"


def test_a_rule_below_the_bar_is_a_watch_with_its_figures_even_on_a_run_that_failed(monkeypatch):
    weak = Measured(planted=5, fired=8, hits=4, healthy_alarms=2)  # precision 0.5, recall 0.8
    monkeypatch.setitem(measured_mod.MEASURED, "attention_logit_growth", weak)
    rec = run(
        {"val/loss": at_chance, "cond/attn_logit_max/layer_0": growing_logits},
        learning="did_not_learn",
    )
    d = RULES["attention_logit_growth"].diagnose(rec)
    assert d is not None and d.kind == WATCH
    assert "precision 0.50 (4/8), recall 0.80 (4/5)" in d.why and "below the bar" in d.why
    # ... and the measurement itself reads every finding ungated
    assert RULES["attention_logit_growth"].diagnose(rec, gated=False).kind == "diagnosis"


def test_the_bar_is_precision_0_9_and_recall_0_8_and_an_unmeasured_rule_is_demoted(monkeypatch):
    assert (MIN_PRECISION, MIN_RECALL) == (0.9, 0.8)
    assert Measured(planted=5, fired=5, hits=5, healthy_alarms=0).passes()
    assert not Measured(planted=5, fired=10, hits=5, healthy_alarms=5).passes()  # precision 0.5
    assert not Measured(planted=10, fired=7, hits=7, healthy_alarms=0).passes()  # recall 0.7
    assert not Measured(planted=0, fired=0, hits=0, healthy_alarms=0).passes()  # never measured
    monkeypatch.delitem(measured_mod.MEASURED, "no_such_rule", raising=False)
    assert "never measured" in (demotion("no_such_rule") or "")


# ----------------------------------------------------------------------------- the symptoms


def test_symptom_diverged_or_not_learned_by_the_verdict_or_by_the_last_val_loss():
    assert symptom(run({"train/loss": learns}, learning=None, status="diverged")) == (
        "the run diverged"
    )
    nan_loss = run({"train/loss": lambda s: math.nan if s > 300 else learns(s)}, learning=None)
    assert symptom(nan_loss) == "the run diverged"
    assert "collapsed" in (symptom(run({"val/loss": learns}, learning="collapsed")) or "")
    # no verdict recorded (a run stopped early): the last val/loss against chance
    stuck = run({"val/loss": lambda s: CHANCE * 0.95}, learning=None)
    assert "not 10% below chance 2.21" in (symptom(stuck) or "")
    assert symptom(run({"val/loss": learns}, learning=None)) is None


def test_symptom_a_plateau_at_chance_for_half_the_run_even_if_it_learned_later():
    late = run({"val/loss": lambda s: CHANCE if s < 260 else 0.05}, learning="learned")
    assert "sat at chance from step 0 to 250" in (symptom(late) or "")
    early = run({"val/loss": lambda s: CHANCE if s < 100 else 0.05}, learning="learned")
    assert symptom(early) is None


def test_symptom_a_loss_spike_counts_only_when_the_run_did_not_recover():
    def recovered(s: int) -> float:
        return 3.0 if s == 250 else learns(s)

    def stays_up(s: int) -> float:
        return learns(s) if s < 250 else 1.5

    assert symptom(run({"train/loss": recovered}, learning="learned")) is None
    ev = symptom(run({"train/loss": stays_up}, learning="learned")) or ""
    assert "spiked at step 250 and ended at 1.5" in ev


def test_a_run_with_no_loss_verdict_or_chance_shows_no_symptom():
    assert symptom(RunRecords()) is None


# ----------------------------------------------------------------------------- records


def test_an_old_summary_without_the_kind_loads_as_a_diagnosis_and_is_worked_out_again(tmp_path):
    old = {"rule": "uniform_attention", "title": "uniform attention", "evidence": "e",
           "paper": "p 2020", "advice": "init=auto"}  # fmt: skip
    d = Diagnosis.from_dict(old)
    assert (d.kind, d.why) == ("diagnosis", "")
    assert Diagnosis.from_dict(d.as_dict()) == d
    # a run directory recorded before the gate: its records are read again, with the gate
    (tmp_path / "config.yaml").write_text("train: {max_steps: 400}\n")
    (tmp_path / "metrics.csv").write_text(
        "step,train/loss\n"
        + "".join(f"{s},{3.0 if s == 250 else 0.5}\n" for s in range(0, 400, 10))
    )
    (tmp_path / "status.json").write_text(json.dumps({"status": "completed"}))
    (tmp_path / "summary.json").write_text(json.dumps({"diagnoses": [old]}))
    (found,) = diagnose_run(tmp_path)
    assert found.rule == "loss_spikes" and found.kind == WATCH  # recovered: no symptom


def test_wandb_summary_keeps_watches_apart_from_diagnoses():
    diag = Diagnosis("chance_plateau", "plateau at chance", "e1", "p 2022", "a").as_dict()
    watch = Diagnosis("loss_spikes", "loss spikes", "e2", "p 2022", "a", kind=WATCH).as_dict()
    assert diagnosis_summary([diag, watch]) == {
        "diagnoses": "chance_plateau",
        "diagnosis/chance_plateau": "e1",
        "watches": "loss_spikes",
        "watch/loss_spikes": "e2",
    }
    assert diagnosis_summary([watch])["diagnoses"] == "none"


def test_the_sweep_table_shows_diagnoses_and_watches_in_their_own_columns():
    from rich.console import Console

    from bench.sweeps.progress.status import diagnosis_table

    diag = Diagnosis("chance_plateau", "plateau at chance", "val/loss at 2.2", "p 2022", "a")
    watch = Diagnosis("loss_spikes", "loss spikes", "jumped at 250", "p 2022", "a", kind=WATCH)
    console = Console(width=200, record=True)
    console.print(
        diagnosis_table(
            [
                ("tune", "pre", 0, "completed", [diag, watch]),
                ("seed", "post", 3, "completed", [watch]),
            ]
        )
    )
    text = console.export_text()
    header = next(x for x in text.splitlines() if "diagnoses" in x and "watches" in x)
    assert header.index("diagnoses") < header.index("watches")
    row0 = next(x for x in text.splitlines() if " pre " in x)
    assert "plateau at chance" in row0 and "loss spikes" in row0 and "val/loss at 2.2" in row0
    row1 = next(x for x in text.splitlines() if " post " in x)
    assert "–" in row1 and "(watch) jumped at 250" in row1

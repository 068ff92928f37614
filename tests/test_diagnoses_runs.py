"""Diagnoses of real runs: the quickstart's post-LN with the old init is diagnosed
(regression test of issue 16), a healthy pre-LN run is not, a failing rule never fails
a run, and W&B gets summary keys (and, online only, an alert)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import diagnoses
from bench.config import build_run_config
from bench.diagnoses import Rule, RunRecords
from bench.tracking import SafeWandbLogger, alert_diagnoses, diagnosis_summary
from bench.training.run import train_run

# The quickstart (sweeps/quickstart.yaml) cut to 60 steps, measured every 10: the first
# 40% of training (EARLY_FRACTION) is steps 0-24, three measurements.
QUICKSTART = {
    "task.name": "reverse",
    "task.seq_len": 8,
    "task.n_symbols": 12,
    "task.n_train": 2048,
    "task.n_val": 128,
    "task.eval_scales": [1],
    "task.batch_size": 32,
    "model.d_model": 32,
    "model.n_layers": 2,
    "model.n_heads": 4,
    "model.max_len": 80,
    "train.lr": 1e-2,
    "train.warmup_steps": 20,
    "train.max_steps": 60,
    "train.val_every": 20,
    "train.log_every": 10,
    "train.progress_bar": False,
    "diagnostics.gradients_every": 10,
    "diagnostics.throughput": False,
    "tracking.mode": "disabled",
}
OLD_INIT = {"model.norm_placement": "post", "model.init": "gpt2", "model.embed_scale": "none"}


def quickstart(tmp_path: Path, **overrides: Any):
    o = {**QUICKSTART, "tracking.out_dir": str(tmp_path / "runs"), **overrides}
    return build_run_config(overrides=o)


def test_quickstart_post_ln_with_the_old_init_is_diagnosed_uniform_attention_and_bad_depth(
    tmp_path,
):
    result = train_run(quickstart(tmp_path, **OLD_INIT))
    fired = {d["rule"]: d for d in result.diagnoses}
    assert {"uniform_attention", "ill_conditioned_depth"} <= set(fired)
    assert "layer_0 stayed uniform" in fired["uniform_attention"]["evidence"]
    assert fired["uniform_attention"]["advice"].startswith("init=auto")
    assert "block_0 is" in fired["ill_conditioned_depth"]["evidence"]
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["diagnoses"] == result.diagnoses
    # the report and bench status read them back from the run directory
    assert [d.rule for d in diagnoses.diagnose_run(result.run_dir)] == list(fired)
    # and the rules give the same answer from the files alone
    rec = RunRecords.from_run_dir(result.run_dir, {**summary, "diagnoses": None})
    assert [d.rule for d in diagnoses.diagnose(rec)] == list(fired)


def test_quickstart_pre_ln_with_the_auto_init_has_neither_diagnosis(tmp_path):
    result = train_run(quickstart(tmp_path, **{"model.norm_placement": "pre"}))
    fired = {d["rule"] for d in result.diagnoses}
    assert not fired & {"uniform_attention", "ill_conditioned_depth"}, result.diagnoses


class _Broken(Rule):
    name, title, reads, paper, advice = "broken", "broken", ("x",), "none 2024", "none"

    def evidence(self, rec: RunRecords) -> str | None:
        raise RuntimeError("boom")


def test_a_rule_that_fails_never_fails_the_run(tiny, monkeypatch):
    monkeypatch.setitem(diagnoses.RULES, "broken", _Broken())
    result = train_run(tiny(**{"train.max_steps": 5, "diagnostics.gradients_every": 2}))
    assert result.status == "completed"
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert isinstance(summary["diagnoses"], list)
    assert any(
        m.startswith("diagnosis broken: end of run: RuntimeError: boom")
        for m in summary["diagnostic_errors"]
    )


# ----------------------------------------------------------------------------- W&B


FOUND = [
    {
        "rule": "uniform_attention",
        "title": "uniform attention",
        "evidence": "attention in layer_0 stayed uniform for the first 160 steps",
        "paper": "Xiong et al. 2020",
        "advice": "init=auto",
    }
]


def test_wandb_summary_keys_name_each_rule_and_its_evidence():
    assert diagnosis_summary(FOUND) == {
        "diagnoses": "uniform_attention",
        "diagnosis/uniform_attention": FOUND[0]["evidence"],
    }
    assert diagnosis_summary([]) == {"diagnoses": "none"}


class _Run:
    """Stands in for a W&B run (an online one needs the W&B cloud): records alerts."""

    def __init__(self, offline: bool) -> None:
        self.offline = offline
        self.alerts: list[dict[str, str]] = []

    def alert(self, **kwargs: str) -> None:
        self.alerts.append(kwargs)


@pytest.mark.parametrize("offline", [False, True])
def test_an_alert_goes_out_only_from_an_online_run(offline):
    run = _Run(offline)
    logger = SafeWandbLogger(experiment=run, project="bench")
    sent = alert_diagnoses(logger, FOUND, "reverse-post")
    assert sent is not offline
    assert len(run.alerts) == (0 if offline else 1)
    if not offline:
        assert run.alerts[0]["title"] == "reverse-post: uniform attention"
        assert run.alerts[0]["level"] == "WARN" and "try init=auto" in run.alerts[0]["text"]
    assert alert_diagnoses(logger, [], "reverse-post") is False


def test_a_failing_alert_is_a_warning_not_an_error():
    run = _Run(offline=False)

    def refuse(**kwargs: str) -> None:
        raise ConnectionError("no network")

    run.alert = refuse  # type: ignore[method-assign]
    logger = SafeWandbLogger(experiment=run, project="bench")
    with pytest.warns(UserWarning, match="W&B alert failed"):
        assert alert_diagnoses(logger, FOUND, "r") is False


def test_an_offline_run_records_the_diagnosis_summary_keys(tiny):
    from wandb_runs import find_run_files, read_run

    result = train_run(
        tiny(**{"train.max_steps": 5, "tracking.mode": "offline", "diagnostics.gradients": False})
    )
    (path,) = find_run_files(result.run_dir / "wandb")
    summary = read_run(path).summary
    diagnosed = [d["rule"] for d in result.diagnoses if d["kind"] == "diagnosis"]
    assert summary["diagnoses"] == (", ".join(diagnosed) or "none")

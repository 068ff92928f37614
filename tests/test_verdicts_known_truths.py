"""Real sweeps with known truths, end to end: ``bench sweep`` then ``bench report``.

The pipeline (tuning, pruning, seeds, learning judgement, statistics, wording) must
reach the answer we built in: an axis that changes nothing never has a winner, and a
learning-rate range that cannot learn is reported as "did not learn" with no winner.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from sweep_helpers import PYTHON, env_for_tests, tiny_spec, write_spec

WINNER_WORDS = (" beats ", "Best cell", "Fastest:")  # how the report names a winner


def _bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "bench", *args],
        env=env_for_tests(),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
    )


def _sweep_and_report(tmp_path: Path, spec: dict) -> tuple[str, str]:
    spec_path = write_spec(tmp_path / "spec.yaml", spec)
    sweep = _bench("sweep", str(spec_path), "--workers", "2", "--out", "sweep", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    report = _bench("report", "sweep", "--out", "report", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-3000:]
    md = (tmp_path / "report" / "report.md").read_text()
    html = (tmp_path / "report" / "index.html").read_text()
    return md, html


def _findings(md: str) -> str:
    """The report's Findings section (the verdicts, not the tables or captions)."""
    start = md.index("## Findings")
    end = md.find("\n## ", start + 3)
    return md[start : end if end > 0 else None]


@pytest.mark.slow
def test_the_same_model_under_two_names_gets_no_winner(tmp_path):
    preset = "norm_placement: pre\npos_encoding: learned\n"
    for name in ("alpha", "beta"):  # one model, two names
        (tmp_path / f"{name}.yaml").write_text(preset)
    spec = tiny_spec(
        compare={"variant": [str(tmp_path / "alpha.yaml"), str(tmp_path / "beta.yaml")]},
        tune={"params": {"train.lr": {"low": 3e-3, "high": 3e-2, "log": True}}, "trials": 2},
        seeds=3,
        pruner=None,
    )
    spec["base"]["train"].update(max_steps=60, val_every=20)
    md, _html = _sweep_and_report(tmp_path, spec)
    found = _findings(md)
    assert "significant" in found.lower() or "inconclusive" in found.lower()
    assert "**significant**" not in found and "status: significant" not in found.lower()
    for word in WINNER_WORDS:
        assert word not in found, (word, found)


@pytest.mark.slow
def test_a_learning_rate_range_that_cannot_learn_is_reported_as_did_not_learn(tmp_path):
    spec = tiny_spec(
        tune={"params": {"train.lr": {"low": 1e-7, "high": 1e-6, "log": True}}, "trials": 2},
        seeds=3,
        pruner="none",  # let every run finish: the verdict, not the pruner, must find it
    )
    spec["base"]["train"].update(max_steps=40, val_every=20)
    md, _html = _sweep_and_report(tmp_path, spec)
    found = _findings(md)
    first = found.split("\n- ", 1)[1] if "\n- " in found else found
    assert "no cell learned" in first.lower(), found
    for word in WINNER_WORDS:
        assert word not in found, (word, found)
    runs = [json.loads(p.read_text()) for p in (tmp_path / "sweep" / "runs").glob("*/summary.json")]
    assert runs and all(r["learning"]["status"] != "learned" for r in runs)


def test_comparing_placements_under_one_init_that_starves_post_ln_says_so(tmp_path):
    from bench.report import build_report
    from bench.sweeps import run_worker

    spec = tiny_spec(
        tune={"params": {"train.lr": {"low": 1e-2, "high": 1e-2}}, "trials": 1}, seeds=0
    )
    spec["base"]["model"].update(init="gpt2", embed_scale="none")  # GPT-2's N(0, 0.02)
    path = write_spec(tmp_path / "spec.yaml", spec)
    assert run_worker(str(path), out=str(tmp_path / "sweep"), worker_id="w0", threads=1) == 0
    md = (build_report(tmp_path / "sweep", tmp_path / "report") / "report.md").read_text()
    findings = _findings(md)
    assert "init=gpt2 with embed_scale=none" in findings
    assert "post attention near uniform" in findings

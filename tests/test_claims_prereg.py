"""Pre-registration: a claim's runs record the file they were launched with, and a file
changed after its runs is not judged on them; a version reusing an offset is refused."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bench.claims import prereg
from bench.claims import spec as cspec

CLAIM = {
    "title": "A trained model beats an untrained one",
    "citation": "constructed",
    "url": "https://example.org",
    "statement": "Training lowers the loss.",
    "scale": "The smallest copy task that trains in seconds.",
    "caveat": "Tiny runs.",
    "sweep": {
        "base": {
            "task": {"name": "copy", "seq_len": 6, "n_symbols": 8, "n_train": 128, "n_val": 32,
                     "eval_scales": [1], "batch_size": 16},
            "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_len": 32},
            "train": {"val_every": 20, "warmup_steps": 0, "log_every": 10, "threads": 1,
                      "precision": "32-true"},
            "tracking": {"mode": "disabled"},
            "diagnostics": {"gradients": False, "noise_scale": False,
                            "attention_entropy": False, "throughput": False},
        },
        "compare": {"train.lr": [3.0e-2, 1.0e-6]},
        "seeds": 2,
        "pruner": "none",
        "budget": {"max_steps": 60},
    },
    "budgets": {"quick": {}, "full": {}},
    "metrics": {"loss": {"key": "val/loss", "best": 0.0}},
    "tests": [
        {"kind": "better", "metric": "loss", "a": {"train.lr": 0.03}, "b": {"train.lr": 1.0e-6},
         "sesoi": 0.05, "why": "a few percent of the chance loss"},
    ],
    "requires": [{"metric": "loss", "cells": {"train.lr": 0.03}, "at_most": 5.0}],
    "no_control": "a constructed claim",
}  # fmt: skip


def _write(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "trains.yaml"
    path.write_text(yaml.safe_dump({**CLAIM, **changes}, sort_keys=False))
    return path


def test_a_launch_records_the_claim_files_hash_version_commit_budget_and_offset(tmp_path):
    path = _write(tmp_path)
    claim = cspec.load_claim(path)
    assert prereg.record_launch(claim, tmp_path, "full", 4) is None
    rec = json.loads((tmp_path / "claim.json").read_text())
    assert rec["claim"] == "trains" and rec["version"] == 1
    assert rec["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert rec["budget"] == "full" and rec["seed_offset"] == 4 and rec["launched"]
    assert len(rec["commit"]) == 40 or rec["commit"] == "unknown"
    # resuming with the same file adds the resumption, keeps the launch
    assert prereg.record_launch(claim, tmp_path, "full", 4) is None
    again = json.loads((tmp_path / "claim.json").read_text())
    assert again["launched"] == rec["launched"] and len(again["resumed"]) == 1
    reg = prereg.check_registration(claim, tmp_path)
    assert reg.problem is None and reg.sha256 == rec["sha256"] and reg.commit == rec["commit"]


def test_a_file_changed_after_its_runs_is_not_judged_on_them(tmp_path):
    path = _write(tmp_path)
    prereg.record_launch(cspec.load_claim(path), tmp_path, "full", 4)
    before = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    path = _write(tmp_path, caveat="Tiny runs, and a changed threshold.")
    claim = cspec.load_claim(path)
    now = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    warning = prereg.record_launch(claim, tmp_path, "full", 4)
    assert warning is not None and "changed since its runs launched" in warning
    problem = prereg.check_registration(claim, tmp_path).problem
    assert problem == (
        f"the claim file changed after its runs (sha {before} at launch, {now} now); "
        "give it a new version and run fresh offsets"
    )
    newer = _write(tmp_path, version=2, versions=[{"version": 1, "offsets": [4], "why": "x"}])
    problem = prereg.check_registration(cspec.load_claim(newer), tmp_path).problem
    assert problem is not None and "the runs were launched for version 1" in problem


def test_a_claim_judging_another_claims_sweep_records_beside_the_owner(tmp_path):
    path = _write(tmp_path, sweep=None, sweep_of="gqa", budgets={})
    claim = cspec.load_claim(path)
    assert prereg.record_path(tmp_path, claim) == tmp_path / "claim-trains.json"


def _reproduce(tmp_path: Path, claim: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "bench", "reproduce", str(claim), "--budget", "quick",
           "--workers", "2", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "out"),
           *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)


@pytest.mark.slow
def test_real_tiny_runs_reach_a_verdict_and_a_changed_file_is_not_judged_on_them(tmp_path):
    # Six runs of a one-layer model on copying, 60 steps: lr 3e-2 learns, lr 1e-6 does not.
    path = _write(tmp_path)
    p = _reproduce(tmp_path, path)
    assert p.returncode == 0, p.stderr[-3000:]
    md = (tmp_path / "out" / "report.md").read_text()
    assert (
        "## A trained model beats an untrained one: consistent with the paper at this scale" in md
    )
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    assert f"claim file sha256 `{sha}`" in md
    assert (tmp_path / "runs" / "trains" / "claim.json").is_file()
    verdicts = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    assert verdicts["claims"]["trains"]["status"] == "consistent with the paper at this scale"
    assert verdicts["claims"]["trains"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    _write(tmp_path, caveat="Edited after the runs.")
    p = _reproduce(tmp_path, path, "--judge-only")
    assert p.returncode == 0, p.stderr[-3000:]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## A trained model beats an untrained one: inconclusive" in md
    assert "The claim file changed after its runs" in md  # the verdict's reason, capitalised


def test_a_launch_records_the_bytes_the_claim_was_loaded_from(tmp_path):
    path = _write(tmp_path)
    claim = cspec.load_claim(path)
    loaded = hashlib.sha256(path.read_bytes()).hexdigest()
    _write(tmp_path, caveat="Edited between loading and launching.")
    prereg.record_launch(claim, tmp_path, "quick", 0)
    assert json.loads((tmp_path / "claim.json").read_text())["sha256"] == loaded
    assert prereg.check_registration(cspec.load_claim(path), tmp_path).problem is not None

"""A bare ``bench train`` is a first run that learns its task; any setting given starts from
the config defaults, which no sweep spec or claim file sees changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import train as train_cli
from bench.cli.main import main
from bench.config import build_run_config


class Trained(Exception):
    """Raised by the stand-in for train_run: the config it was given, without training."""


@pytest.fixture
def captured(monkeypatch):
    seen = {}

    def fake_train_run(cfg, **kwargs):
        seen["cfg"] = cfg
        raise Trained

    monkeypatch.setattr("bench.training.prepare.prepare", lambda cfg, resume=None: None)
    monkeypatch.setattr("bench.training.run.train_run", fake_train_run)
    return seen


def test_a_bare_bench_train_trains_the_first_run_and_says_so(captured, capsys):
    with pytest.raises(Trained):
        main(["train"])
    cfg = captured["cfg"]
    assert (cfg.task.name, cfg.task.seq_len, cfg.task.n_symbols) == ("copy", 8, 12)
    assert (cfg.model.d_model, cfg.train.lr, cfg.train.max_steps) == (32, 1e-2, 400)
    note = capsys.readouterr().err
    assert "bench train with no settings: a first run" in note
    assert " ".join(train_cli.FIRST_RUN) in note


def test_any_setting_starts_from_the_config_defaults(captured, capsys):
    with pytest.raises(Trained):
        main(["train", "tracking.mode=disabled"])
    assert captured["cfg"].model_dump(exclude={"tracking"}) == build_run_config(
        overrides={"tracking.mode": "disabled"}
    ).model_dump(exclude={"tracking"})
    assert "first run" not in capsys.readouterr().err


def test_the_first_run_changes_no_config_default():
    """Sweep specs, claim files and bench.train() resolve against these; the first run is
    the CLI's alone, so what a committed claim verdict means cannot move with it."""
    defaults = build_run_config()
    first = build_run_config(overrides=dict(a.split("=", 1) for a in train_cli.FIRST_RUN))
    assert (defaults.task.seq_len, defaults.model.d_model, defaults.train.max_steps) == (
        16, 128, 300)  # fmt: skip
    assert (first.task.seq_len, first.model.d_model, first.train.max_steps) == (8, 32, 400)


@pytest.mark.slow  # one real first run: about 20 s on a quiet 2-core machine
def test_a_bare_bench_train_learns_copy_to_95_percent(tmp_path: Path):
    env_cmd = [sys.executable, "-m", "bench", "train"]
    proc = subprocess.run(env_cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**__import__("os").environ, "WANDB_MODE": "disabled"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (summary,) = (tmp_path / "runs").glob("*/summary.json")
    metrics = json.loads(summary.read_text())["metrics"]
    assert metrics["val/acc"] >= 0.95

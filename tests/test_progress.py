"""What ``bench train`` shows while it runs, on a terminal (a real pty) and piped."""

from __future__ import annotations

import os
import pty
import re
import sys
import threading

from bench.config import build_run_config
from bench.training.progress_lines import header_lines, plain_every, step_line
from tests.terminal import drain


def test_the_header_names_the_run_dir_then_the_values_that_differ_from_the_defaults(tmp_path):
    cfg = build_run_config(overrides={"model.d_model": 48, "train.lr": 0.01})
    lines = header_lines(cfg, tmp_path / "run")
    assert lines[0] == f"run dir: {tmp_path / 'run'}"
    assert lines[1].startswith("config (set): ")
    assert "model.d_model=48" in lines[1] and "train.lr=0.01" in lines[1]
    assert "model.n_layers" not in lines[1]  # a default is not "set"
    rest = "\n".join(lines[2:])
    assert "model (default): " in rest and "n_layers=2" in rest
    assert "d_model=48" not in rest  # each value once
    assert all(len(line) <= 100 for line in lines)


def test_a_piped_run_prints_about_ten_step_lines_on_multiples_of_log_every():
    assert plain_every(300, 10) == 30
    assert plain_every(20, 5) == 5
    assert plain_every(1000, 7) == 105
    assert step_line(40, 300, 1.23456, 12345.0, 75) == (
        "step  40/300  loss 1.235  1.23e+04 tok/s  eta 1m15s"
    )


def _cfg(tiny, **extra):
    return tiny(**{"train.progress_bar": None, "train.log_every": 5, **extra})


def test_a_piped_run_prints_the_header_plain_step_lines_and_each_validation(tiny, capsys):
    from bench.training.run import train_run

    result = train_run(_cfg(tiny))
    err = capsys.readouterr().err
    assert f"run dir: {result.run_dir}" in err
    assert "\x1b[" not in err  # no terminal control codes in a log
    steps = re.findall(r"^step +(\d+)/20  loss [\d.]+  [\d.e+]+ tok/s  eta \S+$", err, re.M)
    assert steps == ["5", "10", "15", "20"]
    vals = re.findall(r"^val  step (\d+)/20  val/loss [\d.]+", err, re.M)
    assert vals == ["10", "20"]
    assert "Epoch" not in err  # Lightning's epoch bar is off


def test_progress_bar_false_prints_nothing(tiny, capsys):
    from bench.training.run import train_run

    train_run(tiny())  # the fixture sets train.progress_bar=false
    assert capsys.readouterr().err == ""


def test_on_a_terminal_the_run_shows_a_step_bar_with_loss_tokens_per_second_and_eta(
    tiny, monkeypatch
):
    from bench.training.run import train_run

    master, slave = pty.openpty()
    text: list[str] = []
    reader = threading.Thread(target=lambda: text.append(drain(master)), daemon=True)
    reader.start()
    tty = os.fdopen(slave, "w", buffering=1)
    monkeypatch.setattr(sys, "stderr", tty)
    assert sys.stderr.isatty()
    result = train_run(_cfg(tiny))
    tty.close()  # the reader sees EOF
    reader.join(timeout=10)
    os.close(master)
    screen = text[0].replace("\r", "\n")
    assert f"run dir: {result.run_dir}" in screen
    assert "━" in screen  # rich's bar
    assert re.search(r"20/20 loss [\d.]+ [\d.e+]+ tok/s eta", screen), screen[-2000:]
    assert re.search(r"val  step 20/20  val/loss", screen)
    assert not re.search(r"^step +\d+/20  loss", screen, re.M)  # no plain lines on a terminal

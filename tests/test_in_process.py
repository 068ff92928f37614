"""``tests/in_process.py``: a ``bench`` command in the test process reads back like the
subprocess it stands in for, and leaves the process as it found it."""

from __future__ import annotations

import os
import signal

import torch

from tests.in_process import bench_in_process


def test_a_command_gives_its_exit_code_and_what_it_wrote_to_each_stream(tmp_path):
    listed = bench_in_process("variants")
    assert listed.returncode == 0 and "model.pos_encoding" in listed.stdout
    assert listed.stderr == ""
    refused = bench_in_process("train", "model.colour=red", cwd=tmp_path)
    assert refused.returncode == 2 and refused.stdout == ""
    (line,) = refused.stderr.splitlines()
    assert line.startswith("bench train: error: unknown key 'model.colour'; allowed: arch,")
    usage = bench_in_process("nosuchcommand")  # argparse's own exit
    assert usage.returncode == 2 and "invalid choice" in usage.stderr


def test_the_environment_directory_signals_and_threads_are_restored(tmp_path):
    before = (dict(os.environ), os.getcwd(), signal.getsignal(signal.SIGINT))
    threads = torch.get_num_threads()
    run = tmp_path / "run"
    done = bench_in_process(
        "train", "model.d_model=16", "model.n_layers=1", "model.n_heads=2", "task.seq_len=4",
        "task.n_train=32", "task.n_val=8", "task.batch_size=8", "train.max_steps=2",
        "train.val_every=2", "train.threads=2", "train.precision=32-true",
        "diagnostics.peak_flops=1e11", "diagnostics.figures=false", "tracking.mode=disabled",
        f"tracking.run_dir={run}",
        env={**os.environ, "BENCH_IN_PROCESS_PROBE": "1"}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (run / "summary.json").is_file()
    assert (dict(os.environ), os.getcwd(), signal.getsignal(signal.SIGINT)) == before
    assert torch.get_num_threads() == threads

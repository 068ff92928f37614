"""The ``bench`` command as a user meets it: output, exit codes, one-line errors.

Each command runs in this process (``tests/in_process.py``): none of these is about the
process itself, and a fresh interpreter costs seconds of imports; the entry point in a
real process is ``test_bad_inputs.test_bad_input_in_a_real_process_...``'s.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.in_process import bench_in_process

ROOT = Path(__file__).resolve().parent.parent


def bench(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return bench_in_process(*args, cwd=cwd)


def test_variants_lists_every_axis_and_every_preset():
    out = bench("variants").stdout
    for line in (
        "model.pos_encoding",
        "sinusoidal, learned*, rope, alibi, t5, nope",
        "model.norm_placement",
        "model.n_kv_heads",
        "train.mup_base_width",
        "modadd",  # and every task
        "text ",
    ):
        assert line in out
    assert re.search(r"model\.n_heads +query heads", out)  # sizes, with what they mean
    assert re.search(r"train\.parameterization +standard: ", out)  # training fields too
    # every model and train key in one column, however long the key
    keys = out.split("\nPapers")[0]
    starts = {len(m[1]) for m in re.finditer(r"^(  (?:model|train)\.\w+ +)\S", keys, re.M)}
    assert len(starts) == 1
    for preset in (
        "vaswani2017",
        "gpt2",
        "llama",
        "alibi",
        "nope",
        "t5-bias",
        "deepnorm",
        "sandwich",
    ):
        assert f"  {preset} " in out
    assert "pos_encoding=rope" in out  # what llama sets


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["model.d_model=30", "model.n_heads=4"],
            "model.d_model=30 must be divisible by model.n_heads=4",
        ),
        (["model.pos_encoding=xpos"], "model.pos_encoding='xpos'"),
        (["task.name=imagenet"], "task.name='imagenet'"),
        (["train.lr=fast"], "train.lr='fast'"),
        (["model.colour=red"], "unknown key 'model.colour'"),
        (["variant=nosuch"], "no such preset"),
        (["task.name=text", "task.paths=[/no/such/corpus]"], "/no/such/corpus"),
        (
            ["task.seq_len=300", "model.max_len=512"],
            "model.max_len=512 is shorter than the longest sequence",
        ),
        (["notakeyvalue=", "x"], "expected key=value"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_creates_nothing(tmp_path, args, message):
    r = bench("train", *args, f"tracking.out_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_an_empty_corpus_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("")
    r = bench("train", "task.name=text", f"task.paths=[{tmp_path / 'empty'}]", cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_resume_of_a_finished_run_or_a_non_run_is_refused(tmp_path):
    r = bench("train", "--resume", str(tmp_path))
    assert r.returncode == 2 and "not a run directory" in r.stderr


def test_landscape_needs_a_checkpoint(tmp_path):
    (tmp_path / "config.yaml").write_text("model: {d_model: 32}\n")
    r = bench("landscape", str(tmp_path))
    assert r.returncode == 2 and "no checkpoint" in r.stderr and "Traceback" not in r.stderr


def test_report_on_a_directory_that_is_not_a_sweep(tmp_path):
    r = bench("report", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1


def test_presets_and_templates_ship_in_the_wheel(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("bench-*.whl"))
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import bench, bench.config.presets as p;"
        f"assert bench.__file__.startswith({str(site)!r}), bench.__file__;"
        "assert p.load('llama')['pos_encoding'] == 'rope';"
        "import importlib.resources as r;"
        "assert r.files('bench.report').joinpath('templates/report.html.j2').is_file()"
    )
    subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {str(site)!r}); {code}"],
        check=True,
        cwd=tmp_path,
    )


def test_throughput_compares_configs_side_by_side(tmp_path):
    r = bench(
        "throughput",
        "model.d_model=32",
        "model.n_heads=2",
        "task.seq_len=16",
        "task.batch_size=4",
        "diagnostics.peak_flops=1e11",  # MFU against a fixed peak: no peak measurement
        "--vary",
        "model.pos_encoding=rope,alibi",
        "--steps",
        "1",
        "--rounds",
        "5",
        "--csv",
        str(tmp_path / "t.csv"),
    )
    assert r.returncode == 0, r.stderr
    for name in (
        "base",
        "model.pos_encoding=rope",
        "model.pos_encoding=alibi",
        "median of 5 interleaved rounds",
        "MFU",
        "flash (alibi bias)",  # the CPU flash kernel takes the bias as a mask
        "the base's tokens/s (intervals",
        "base: precision ",  # train.precision auto resolved as bench train would, and why
        "at this run's matmul shapes",
    ):
        assert name in r.stdout
    assert len((tmp_path / "t.csv").read_text().splitlines()) == 4


def test_throughput_rejects_a_malformed_vary():
    r = bench("throughput", "--vary", "model.pos_encoding")
    assert r.returncode == 2 and "expected KEY=V1,V2" in r.stderr


@pytest.mark.parametrize(
    ("args", "guess"),
    [
        (["train", "d_model=64"], "did you mean 'model.d_model'?"),  # the section left out
        (["train", "model.d_modle=64"], "did you mean 'model.d_model'?"),  # a typo
        (["train", "train.lr_warmup=5"], None),  # nothing close: no guess
    ],
)
def test_an_unknown_key_says_what_was_probably_meant(args, guess, capsys):
    from bench.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown key" in err
    assert (guess in err) if guess else ("did you mean" not in err)


def test_a_mistyped_command_says_which_was_meant_and_version_is_printed(capsys):
    from bench.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["trian"])
    assert exit_.value.code == 2 and "(did you mean 'train'?)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == "bench 0.1.0"


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    # `bench variants | head -1`: the pipe closes before bench has written everything.
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "variants"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141  # 128 + SIGPIPE, as a shell reports it
    assert "Traceback" not in err and "Exception ignored" not in err, err

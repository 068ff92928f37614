"""A corpus of malformed inputs: each is one line on stderr, exit code 2, and nothing written.

Every case runs ``bench`` in-process through :func:`bench.cli.main` (what the
console script calls), so the whole corpus stays fast; a few run as real
subprocesses too (``SUBPROCESS``). For every case: exit code 2, at most 3
lines on stderr, no traceback (in-process: no exception escapes ``main``), the
expected words in the message, every case well under two seconds, and no file
created or changed in the working directory (no summary.json, no report, no
sweep directory: nothing at all).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from bench.cli import COMMANDS, main
from tools import usage_errors

# A valid tiny sweep spec (the one tools/usage_errors.py times); cases break one thing in
# it (or in its options).
SPEC = usage_errors.SPEC
GOOD_SPEC = yaml.safe_dump(SPEC)
SWEEP_JSON = '{"name": "tiny", "storage": "%s", "spec": "spec.yaml", "runs": "runs"}'
NOT_UTF8 = b"model:\n  d_model: 32\n  name: \xff\xfe\xfa\n"
CLOSED_PORT = "postgresql+psycopg2://bench@127.0.0.1:1/nowhere"


def _checkpoint_bytes() -> bytes:
    """A checkpoint that loads safely (tensors and plain data), so config errors come next."""
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"global_step": 0, "state_dict": {"w": torch.zeros(1)}}, buf)
    return buf.getvalue()


CKPT = _checkpoint_bytes()


def _attention_maps_bytes() -> bytes:
    """A real attention_maps.npz: 2 steps (0 and 30), 1 layer, 2 examples, 1 head, 3x3."""
    import io

    import numpy as np

    from bench.diagnostics.attention.plot import AttentionMaps

    maps = AttentionMaps(
        steps=[0, 30],
        layers=["layer_0"],
        maps=[np.full((2, 2, 1, 3, 3), 1 / 3)],
        queries=[np.array([3, 3])],
        keys=[np.array([3, 3])],
        query_tokens=[np.zeros((2, 3), dtype=np.int64)],
        key_tokens=[np.zeros((2, 3), dtype=np.int64)],
    )
    buf = io.BytesIO()
    np.savez(buf, **maps.arrays())
    return buf.getvalue()


MAPS = {"r/config.yaml": "", "r/diagnostics/attention_maps.npz": _attention_maps_bytes()}


def spec_with(**changes) -> str:
    """GOOD_SPEC with top-level keys replaced (dotted keys go one level down)."""
    import copy

    spec = copy.deepcopy(SPEC)
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            spec.setdefault(section, {})[sub] = value
        else:
            spec[section] = value
    return yaml.safe_dump(spec)


@dataclass(frozen=True)
class Case:
    """``bench ARGS`` in a directory holding ``files``; stderr must contain ``message``."""

    id: str
    args: tuple[str, ...]
    message: str
    files: dict[str, str | bytes] = field(default_factory=dict)


def C(id: str, args: str | list[str], message: str, **files: str | bytes) -> Case:
    argv = args.split() if isinstance(args, str) else args
    return Case(id, tuple(argv), message, {k.replace("__", "/"): v for k, v in files.items()})


RUN_CONFIG = "model: {d_model: 16, n_heads: 2, n_layers: 1}\ntracking: {mode: disabled}\n"

CASES = [
    # ------------------------------------------------------------------ train
    C("train-lr-inf", "train train.lr=.inf", "train.lr=inf: Input should be a finite number"),
    C("train-lr-1e400", "train train.lr=1e400", "train.lr=inf: Input should be a finite number"),
    C("train-lr-nan", "train train.lr=.nan", "train.lr=nan: Input should be a finite number"),
    C("train-lr-minus-inf", "train train.lr=-.inf", "finite number"),
    C("train-peak-flops-inf", "train diagnostics.peak_flops=.inf", "diagnostics.peak_flops"),
    C("train-rope-base-nan", "train model.rope_base=.nan", "model.rope_base"),
    C(
        "train-rope-scaling-without-rope",
        "train model.pos_encoding=alibi model.rope_scaling=yarn",
        "model.rope_scaling=yarn scales RoPE's frequencies, but model.pos_encoding=alibi",
    ),
    C(
        "train-fire-encoder-decoder",
        "train model.pos_encoding=fire model.arch=encoder_decoder",
        "allowed: arch=decoder",
    ),
    C("train-meta-nan", ["train", "tracking.meta={a: .nan}"], "tracking.meta.a"),
    C("train-lr-string", "train train.lr=fast", "train.lr='fast'"),
    C("train-lr-negative", "train train.lr=-1", "train.lr=-1"),
    C("train-heads-negative", "train model.n_heads=-1", "model.n_heads=-1"),
    C("train-max-steps-zero", "train train.max_steps=0", "train.max_steps=0"),
    C("train-eval-scales-inf", ["train", "task.eval_scales=[1e400]"], "task.eval_scales"),
    C("train-d-model-huge", "train model.d_model=1000000000", "the run needs about"),
    C("train-layers-huge", "train model.n_layers=1000000", "model.n_layers=1000000"),
    C("train-max-len-huge", "train model.max_len=1000000000000", "the run needs about"),
    C("train-batch-huge", "train task.batch_size=1000000000", "task.batch_size=1000000000"),
    C("train-batch-over-dataset", "train task.batch_size=5000", "larger than the training set"),
    C("train-n-train-huge", "train task.n_train=1000000000", "task.n_train=1000000000"),
    C("train-devices-over-slots", "train train.devices=512", "CPU slots"),
    C("train-threads-over-slots", "train train.threads=4096", "CPU slots"),
    C("train-gpu-without-gpu", "train train.accelerator=gpu", "no CUDA device"),
    C("train-not-utf8", "train c.yaml", "not UTF-8 text (byte 0xff", **{"c.yaml": NOT_UTF8}),
    C("train-utf16", "train c.yaml", "not UTF-8", **{"c.yaml": "model: {}\n".encode("utf-16")}),
    C("train-empty-yaml", "train c.yaml", "c.yaml: the file is empty", **{"c.yaml": ""}),
    C("train-comment-only", "train c.yaml", "the file is empty", **{"c.yaml": "# nothing\n"}),
    C("train-yaml-list", "train c.yaml", "expected a mapping", **{"c.yaml": "- 1\n- 2\n"}),
    C("train-yaml-scalar", "train c.yaml", "expected a mapping", **{"c.yaml": "42\n"}),
    C(
        "train-duplicate-key",
        "train c.yaml",
        "duplicate key 'lr' at line 3",
        **{"c.yaml": "train:\n  lr: 0.1\n  lr: 0.2\n"},
    ),
    C(
        "train-duplicate-section",
        "train c.yaml",
        "duplicate key 'model' at line 2",
        **{"c.yaml": "model: {d_model: 32}\nmodel: {d_model: 64}\n"},
    ),
    C("train-section-not-mapping", "train c.yaml", "model", **{"c.yaml": "model: [1, 2]\n"}),
    C("train-yaml-syntax", "train c.yaml", "not valid YAML", **{"c.yaml": "train: {lr: [\n"}),
    C("train-yaml-inf", "train c.yaml", "finite", **{"c.yaml": "train:\n  lr: 1e400\n"}),
    C(
        "train-yaml-python-tag",
        "train c.yaml",
        "c.yaml",
        **{"c.yaml": "x: !!python/name:os.system\n"},
    ),
    C("train-yaml-too-big", "train c.yaml", "too large", **{"c.yaml": "#" * (11 << 20)}),
    C("train-no-such-file", "train nosuch.yaml", "nosuch.yaml: no such file"),
    C("train-config-is-a-dir", "train adir", "adir: is a directory", **{"adir/x": ""}),
    C("train-unknown-key", "train model.colour=red", "unknown key 'model.colour'"),
    C("train-not-key-value", "train c.yaml x", "expected key=value", **{"c.yaml": RUN_CONFIG}),
    C("train-duplicate-override", ["train", "tracking.meta={a: 1, a: 2}"], "duplicate key 'a'"),
    C("train-resume-not-a-run", "train --resume nowhere", "not a run directory"),
    C("train-unknown-option", "train --bogus", "unrecognized arguments: --bogus"),
    # ------------------------------------------------------------------ sweep
    C("sweep-workers-1000", "sweep s.yaml --workers 1000", "CPU slots", **{"s.yaml": GOOD_SPEC}),
    C("sweep-workers-0", "sweep s.yaml --workers 0", "--workers=0", **{"s.yaml": GOOD_SPEC}),
    C("sweep-workers-neg", "sweep s.yaml --workers -3", "--workers=-3", **{"s.yaml": GOOD_SPEC}),
    C("sweep-workers-word", "sweep s.yaml --workers two", "invalid int", **{"s.yaml": GOOD_SPEC}),
    C("sweep-devices-twice", "sweep s.yaml --devices 0,0", "listed twice", **{"s.yaml": GOOD_SPEC}),
    C("sweep-devices-no-gpu", "sweep s.yaml --devices 7", "no GPU", **{"s.yaml": GOOD_SPEC}),
    C("sweep-not-utf8", "sweep s.yaml", "not UTF-8", **{"s.yaml": NOT_UTF8}),
    C("sweep-empty", "sweep s.yaml", "s.yaml: the file is empty", **{"s.yaml": ""}),
    C("sweep-list", "sweep s.yaml", "expected a mapping", **{"s.yaml": "- tiny\n"}),
    C(
        "sweep-duplicate-key",
        "sweep s.yaml",
        "duplicate key 'name' at line 2",
        **{"s.yaml": "name: a\nname: b\n"},
    ),
    C(
        "sweep-wall-clock-inf",
        "sweep s.yaml",
        "budget.wall_clock",
        **{"s.yaml": spec_with(budget={"wall_clock": float("inf")})},
    ),
    C(
        "sweep-tune-low-nan",
        "sweep s.yaml",
        "finite",
        **{"s.yaml": spec_with(tune={"params": {"train.lr": {"low": float("nan"), "high": 1.0}}})},
    ),
    C(
        "sweep-base-lr-inf",
        "sweep s.yaml",
        "train.lr=inf",
        **{"s.yaml": spec_with(base={"train": {"lr": float("inf")}})},
    ),
    C("sweep-bad-name", "sweep s.yaml", "name", **{"s.yaml": spec_with(name="../evil")}),
    C("sweep-seeds-negative", "sweep s.yaml", "seeds", **{"s.yaml": spec_with(seeds=-1)}),
    C(
        "sweep-compare-empty",
        "sweep s.yaml",
        "compare.model.norm_placement",
        **{"s.yaml": spec_with(compare={"model.norm_placement": []})},
    ),
    C("sweep-no-such-spec", "sweep nosuch.yaml", "no such file"),
    C(
        "sweep-storage-closed-port",
        ["sweep", "s.yaml", "--storage", CLOSED_PORT],
        "cannot connect",
        **{"s.yaml": GOOD_SPEC},
    ),
    C(
        "sweep-storage-unknown-scheme",
        ["sweep", "s.yaml", "--storage", "nosuchdb://x/y"],
        "storage=nosuchdb://x/y: cannot connect",
        **{"s.yaml": GOOD_SPEC},
    ),
    C(
        "sweep-out-is-a-file",
        "sweep s.yaml --out afile",
        "afile: exists and is not a directory",
        **{"s.yaml": GOOD_SPEC, "afile": "x"},
    ),
    C(
        "sweep-out-not-a-sweep",
        "sweep s.yaml --out full",
        "exists and is not a sweep directory",
        **{"s.yaml": GOOD_SPEC, "full/x": "x"},
    ),
    C(
        "sweep-grows-without-extend",
        "sweep s.yaml --out sw",
        "the spec adds to sweep 'tiny'; rerun with --extend",
        **{
            "s.yaml": spec_with(seeds=5),
            "sw/sweep.json": SWEEP_JSON % "j.log",
            "sw/spec.yaml": yaml.safe_dump({**SPEC, "seeds": 3}),
        },
    ),
    C(
        "sweep-changed-not-additive",
        "sweep s.yaml --out sw --extend",
        "holds sweep 'tiny' with a different spec (compare.model.norm_placement is not an additive",
        **{
            "s.yaml": spec_with(compare={"model.norm_placement": ["post"]}),
            "sw/sweep.json": SWEEP_JSON % "j.log",
            "sw/spec.yaml": GOOD_SPEC,
        },
    ),
    # ------------------------------------------------------------------ worker
    C("worker-not-utf8", "worker s.yaml", "not UTF-8", **{"s.yaml": NOT_UTF8}),
    C("worker-empty", "worker s.yaml", "the file is empty", **{"s.yaml": ""}),
    C(
        "worker-duplicate",
        "worker s.yaml",
        "duplicate key",
        **{"s.yaml": GOOD_SPEC + "name: again\n"},
    ),
    C("worker-threads-0", "worker s.yaml --threads 0", "--threads=0", **{"s.yaml": GOOD_SPEC}),
    C("worker-threads-huge", "worker s.yaml --threads 4096", "CPU slots", **{"s.yaml": GOOD_SPEC}),
    C("worker-threads-word", "worker s.yaml --threads x", "invalid int", **{"s.yaml": GOOD_SPEC}),
    C("worker-deadline-inf", "worker s.yaml --deadline inf", "--deadline", **{"s.yaml": GOOD_SPEC}),
    C(
        "worker-storage-unknown-scheme",
        ["worker", "s.yaml", "--storage", "nosuchdb://x/y"],
        "cannot connect",
        **{"s.yaml": GOOD_SPEC},
    ),
    C("worker-not-a-sweep-dir", "worker adir", "not a sweep directory", **{"adir/x": ""}),
    C("worker-no-such-spec", "worker nosuch.yaml", "no such file"),
    # ------------------------------------------------------------------ report
    C("report-no-such-dir", "report nowhere", "nowhere: no such directory"),
    C("report-not-a-sweep", "report adir", "not a sweep directory", **{"adir/x": ""}),
    C("report-sweep-json-broken", "report sw", "sweep.json", **{"sw/sweep.json": "{not json"}),
    C("report-sweep-json-list", "report sw", "sweep.json", **{"sw/sweep.json": "[]"}),
    C("report-sweep-json-not-utf8", "report sw", "sweep.json", **{"sw/sweep.json": NOT_UTF8}),
    C(
        "report-spec-not-utf8",
        "report sw",
        "not UTF-8",
        **{"sw/sweep.json": SWEEP_JSON % "j.log", "sw/spec.yaml": NOT_UTF8},
    ),
    C(
        "report-storage-closed-port",
        "report sw",
        "cannot connect",
        **{"sw/sweep.json": SWEEP_JSON % CLOSED_PORT, "sw/spec.yaml": GOOD_SPEC},
    ),
    C("report-unknown-option", "report sw --colour", "unrecognized arguments"),
    # ------------------------------------------------------------------ status
    C("status-no-such-dir", "status nowhere", "nowhere"),
    C("status-not-a-sweep", "status adir", "neither a sweep directory", **{"adir/x": ""}),
    C("status-sweep-json-broken", "status sw", "sweep.json", **{"sw/sweep.json": "{oops"}),
    C(
        "status-sweep-json-storage-int",
        "status sw",
        "sweep.json",
        **{"sw/sweep.json": '{"storage": 5}'},
    ),
    C("status-sweep-json-not-utf8", "status sw", "sweep.json", **{"sw/sweep.json": NOT_UTF8}),
    C("status-closed-port", ["status", CLOSED_PORT], "cannot connect"),
    C(
        "status-spec-empty",
        "status sw",
        "the file is empty",
        **{"sw/sweep.json": SWEEP_JSON % "j.log", "sw/spec.yaml": ""},
    ),
    C("status-missing-arg", "status", "required: SWEEP_DIR"),
    # ------------------------------------------------------------------ landscape
    C("landscape-no-such-dir", "landscape nowhere", "not a run directory"),
    C("landscape-not-a-run", "landscape adir", "not a run directory", **{"adir/x": ""}),
    C("landscape-no-checkpoint", "landscape r", "no checkpoint", **{"r/config.yaml": RUN_CONFIG}),
    C(
        "landscape-config-not-utf8",
        "landscape r",
        "not UTF-8",
        **{"r/config.yaml": NOT_UTF8, "r/checkpoints/last.ckpt": CKPT},
    ),
    C(
        "landscape-config-empty",
        "landscape r",
        "the file is empty",
        **{"r/config.yaml": "", "r/checkpoints/last.ckpt": CKPT},
    ),
    C(
        "landscape-config-lr-inf",
        "landscape r",
        "finite",
        **{"r/config.yaml": "train: {lr: .inf}\n", "r/checkpoints/last.ckpt": CKPT},
    ),
    C("landscape-resolution-2", "landscape r --resolution 2", "--resolution=2"),
    C("landscape-batches-0", "landscape r --batches 0", "--batches=0"),
    C("landscape-resolution-word", "landscape r --resolution big", "invalid int"),
    # ------------------------------------------------------------------ attention
    C("attention-no-such-dir", "attention nowhere", "nowhere: no such directory"),
    C("attention-not-a-run", "attention adir", "not a run directory", **{"adir/x": ""}),
    C("attention-no-maps", "attention r", "no attention maps recorded", **{"r/config.yaml": ""}),
    C(
        "attention-maps-corrupt",
        "attention r",
        "not readable as attention maps",
        **{"r/config.yaml": "", "r/diagnostics/attention_maps.npz": b"PK\x03\x04 not a zip"},
    ),
    C("attention-step-not-recorded", "attention r --step 7", "recorded: 0, 30", **MAPS),
    C("attention-example-too-big", "attention r --example 2", "allowed: 0..1", **MAPS),
    C("attention-example-negative", "attention r --example -1", "allowed: 0..1", **MAPS),
    C("attention-step-word", "attention r --step last", "invalid int", **MAPS),
    C("attention-out-not-png", "attention r --out maps.pdf", "ending in .png", **MAPS),
    C("attention-out-no-dir", "attention r --out nodir/m.png", "does not exist", **MAPS),
    C("attention-missing-arg", "attention", "required: RUN_DIR"),
    # ------------------------------------------------------------------ figures
    C("figures-no-such-dir", "figures nowhere", "nowhere: no such directory"),
    C("figures-not-a-run", "figures adir", "neither a run directory", **{"adir/x": ""}),
    C(
        "figures-data-corrupt",
        "figures r",
        "not readable as attention_maps.npz",
        **{"r/config.yaml": "", "r/diagnostics/attention_maps.npz": b"PK\x03\x04 not a zip"},
    ),
    C("figures-missing-arg", "figures", "required: DIR"),
    # ------------------------------------------------------------------ ls
    C("ls-no-such-dir", "ls nowhere", "nowhere: no such directory"),
    C("ls-sort-unknown", "ls --sort colour", "--sort=colour: allowed: started"),
    C("ls-status-unknown", "ls --status finished", "--status=finished: allowed: running"),
    C("ls-two-dirs", "ls a b", "b: one DIR only", **{"a/x": "", "b/x": ""}),
    C("ls-filter-no-value", "ls norm_placement=", "a filter is key=value"),
    # ------------------------------------------------------------------ compare
    C("compare-no-such-dir", "compare nowhere r", "nowhere: neither a run directory"),
    C(
        "compare-one-run",
        "compare r",
        "needs at least two runs",
        **{"r/config.yaml": RUN_CONFIG, "r/status.json": '{"status": "completed"}'},
    ),
    C(
        "compare-out-is-a-file",
        "compare r r --out afile",
        "--out afile: exists and is not a dir",
        **{"afile": "x"},
    ),
    C("compare-no-args", "compare", "required: RUN_OR_SWEEP"),
    # ------------------------------------------------------------------ export
    C("export-no-such-dir", "export nowhere", "nowhere: no such directory"),
    C("export-format-unknown", "export sw --format xlsx", "--format xlsx: allowed: csv, jsonl"),
    C("export-out-no-dir", "export sw --out nodir/r.csv", "--out nodir/r.csv: allowed: a file"),
    C("export-sweep-json-broken", "export sw", "sweep.json", **{"sw/sweep.json": "{oops"}),
    # ------------------------------------------------------------------ throughput
    C("throughput-steps-0", "throughput --steps 0", "--steps=0"),
    C("throughput-steps-negative", "throughput --steps -5", "--steps=-5"),
    C("throughput-rounds-4", "throughput --rounds 4", "--rounds=4: allowed: an integer >= 5"),
    C("throughput-vary-no-values", "throughput --vary model.pos_encoding", "expected KEY=V1,V2"),
    C("throughput-vary-no-key", "throughput --vary =1,2", "expected KEY=V1,V2"),
    C("throughput-vary-bad-value", "throughput --vary model.pos_encoding=rope,xpos", "'xpos'"),
    C("throughput-lr-inf", "throughput train.lr=.inf", "finite"),
    C("throughput-d-model-huge", "throughput model.d_model=1000000000", "the run needs about"),
    C("throughput-batch-huge", "throughput task.batch_size=1000000000", "task.batch_size"),
    C("throughput-not-utf8", "throughput c.yaml", "not UTF-8", **{"c.yaml": NOT_UTF8}),
    C("throughput-csv-no-dir", "throughput --csv nodir/t.csv", "--csv nodir/t.csv"),
    C("throughput-csv-is-dir", "throughput --csv adir", "--csv adir", **{"adir/x": ""}),
]

# A handful as real subprocesses (each pays ~5-10 s of imports): the entry point is main().
SUBPROCESS = {"train-lr-1e400", "sweep-workers-1000", "worker-not-utf8", "status-sweep-json-broken"}


@pytest.fixture(scope="module", autouse=True)
def imported():
    """Import what the commands import, once, so each case's time is its own work."""
    import bench.report
    import bench.sweeps.launcher
    import bench.sweeps.progress.status
    import bench.training.posthoc
    import bench.training.run  # noqa: F401


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")}


def _setup(case: Case, root: Path) -> None:
    for name, content in case.files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _check(case: Case, code: int, stderr: str, seconds: float, before, root: Path) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2, (code, stderr)
    assert "Traceback" not in stderr, stderr
    assert 1 <= len(lines) <= 3, stderr
    assert case.message in stderr, stderr
    # Not a speed target (machines are shared): a guard against a refusal that first
    # trains, retries a connection or waits; each of those takes far longer than this.
    assert seconds < 20.0, f"{case.id} took {seconds:.2f}s"
    assert _snapshot(root) == before, "a bad input must not write anything"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_fast_and_writes_nothing(case, tmp_path, monkeypatch, capsys):
    _setup(case, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCH_SWEEP_STORAGE", raising=False)
    before = _snapshot(tmp_path)
    start = time.perf_counter()
    try:
        code = main(list(case.args))  # an exception escaping here is a traceback for the user
    except SystemExit as e:  # argparse's own exit
        code = e.code if isinstance(e.code, int) else 2
    seconds = time.perf_counter() - start
    _check(case, code, capsys.readouterr().err, seconds, before, tmp_path)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in SUBPROCESS], ids=lambda c: c.id)
def test_bad_input_in_a_real_process_is_one_line_exit_2_and_writes_nothing(case, tmp_path):
    _setup(case, tmp_path)
    before = _snapshot(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "BENCH_SWEEP_STORAGE"}
    r = subprocess.run(
        [sys.executable, "-m", "bench", *case.args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    _check(case, r.returncode, r.stderr, 0.0, before, tmp_path)


def test_the_corpus_covers_every_command_with_at_least_60_cases():
    per_command: dict[str, int] = {}
    for c in CASES:
        per_command[c.args[0]] = per_command.get(c.args[0], 0) + 1
    assert set(per_command) == {
        "train",
        "sweep",
        "worker",
        "report",
        "status",
        "landscape",
        "throughput",
        "attention",
        "figures",
        "ls",
        "compare",
        "export",
    }
    assert sum(per_command.values()) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    assert {c.id for c in CASES} >= SUBPROCESS


# ----------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "inv", usage_errors.INVOCATIONS, ids=[" ".join(i.args) for i in usage_errors.INVOCATIONS]
)
def test_each_commands_usage_error_is_one_line_and_exit_2(inv, tmp_path, monkeypatch, capsys):
    """The invocations tools/usage_errors.py times (not timed here), each in-process."""
    usage_errors.make_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCH_SWEEP_STORAGE", raising=False)
    for package in inv.absent:
        monkeypatch.setitem(sys.modules, package, None)  # as if it were not installed
    try:
        code = main(list(inv.args))  # an exception escaping here is a traceback for the user
    except SystemExit as e:  # argparse's own exit
        code = e.code if isinstance(e.code, int) else 2
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("bench") and "Traceback" not in err


def test_the_usage_errors_cover_every_command():
    assert {i.command for i in usage_errors.INVOCATIONS} >= set(COMMANDS)

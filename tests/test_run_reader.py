"""``bench.run.Run``: the one reader of a run directory, and that nothing else parses one."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from bench.run import Run

ROOT = Path(__file__).resolve().parent.parent
RUN_FILES = ("CONFIG", "STATUS", "MANIFEST", "SUMMARY", "METRICS")
RUN_FILE_NAMES = ("config.yaml", "status.json", "manifest.json", "summary.json", "metrics.csv")
READING = re.compile(r"json|yaml|read|load|DictReader", re.IGNORECASE)  # a call that parses a file


def _run_dir(tmp_path: Path, **files: str) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    names = {"config": "config.yaml", "status": "status.json", "manifest": "manifest.json",
             "summary": "summary.json", "metrics": "metrics.csv"}  # fmt: skip
    for key, text in files.items():
        (run / names[key]).write_text(text)
    return run


def test_a_finished_run_reads_as_its_files_say(tmp_path):
    run_dir = _run_dir(
        tmp_path,
        config="model:\n  d_model: 64\ntrain:\n  lr: 1.0e-03\n",
        status=json.dumps({"status": "completed"}),
        manifest=json.dumps({"seed": 3}),
        summary=json.dumps({"status": "completed", "metrics": {"val/loss": 1.5, "bad": "NaN"}}),
        metrics="step,train/loss,val/loss\n0,3.2,\n10,2.0,1.5\n",
    )
    run = Run.load(run_dir)
    assert Run.is_run_dir(run_dir) and run.problems == ()
    assert run.finished and not run.resumable and run.state == "completed"
    assert run.flat_config() == {"model.d_model": 64, "train.lr": 0.001}
    assert run.manifest == {"seed": 3}
    assert run.final_metrics() == {"val/loss": 1.5}
    assert run.history() == [
        {"step": 0.0, "train/loss": 3.2},
        {"step": 10.0, "train/loss": 2.0, "val/loss": 1.5},
    ]


def test_a_running_run_with_a_checkpoint_is_resumable_and_missing_files_read_empty(tmp_path):
    run_dir = _run_dir(tmp_path, config="model: {}\n", status='{"status": "running"}')
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"x")
    run = Run.load(run_dir)
    assert run.resumable and not run.finished and run.state == "running"
    assert run.summary == {} and run.final_metrics() == {} and run.history() == []
    assert run.problems == ()
    assert not Run.is_run_dir(tmp_path) and Run.load(tmp_path / "nowhere").state == "unknown"


def test_files_that_do_not_parse_read_empty_and_are_named(tmp_path):
    run_dir = _run_dir(
        tmp_path,
        config="model: [unclosed\n",
        status='["not", "a", "mapping"]',
        summary='{"status": "compl',  # torn mid-write
    )
    (run_dir / "manifest.json").write_bytes(b"\xff\xfe not utf-8")
    run = Run.load(run_dir)
    assert (run.config, run.status, run.summary, run.manifest) == ({}, {}, {}, {})
    assert run.problems == (
        "config.yaml: does not parse (ParserError)",
        "status.json: not a mapping",
        "manifest.json: unreadable (UnicodeDecodeError)",
        "summary.json: does not parse (JSONDecodeError)",
    )
    assert run.finished  # summary.json exists: the run ended, even if its file is torn


def _parses_a_run_file(node: ast.Call) -> bool:
    fn = node.func
    name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", "")
    if not READING.search(name) or name.startswith(("write", "dump", "atomic")):
        return False
    text = ast.unparse(node)
    return any(c in text for c in RUN_FILES + RUN_FILE_NAMES)


def _run_file_parsers(source: str) -> list[int]:
    return sorted(
        {
            n.lineno
            for n in ast.walk(ast.parse(source))
            if isinstance(n, ast.Call) and _parses_a_run_file(n)
        }
    )


def test_no_module_but_the_run_reader_parses_a_run_directorys_files():
    # the writers (records.py) and the reader (run.py) are where the formats live
    allowed = {"bench/run.py", "bench/records.py"}
    found = {
        rel: lines
        for path in sorted((ROOT / "bench").rglob("*.py"))
        if (rel := str(path.relative_to(ROOT))) not in allowed
        and (lines := _run_file_parsers(path.read_text()))
    }
    assert found == {}


def test_the_parser_check_sees_a_summary_read_with_json():
    source = "import json\nx = json.loads((run_dir / SUMMARY).read_text())\n"
    assert _run_file_parsers(source) == [2]
    assert _run_file_parsers("x = json.loads(text)\n") == []

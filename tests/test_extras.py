"""Optional packages (``bench/extras.py``): each is installed by an extra of pyproject.toml,
and where one is missing the command says which extra in one line, exit code 2.

The commands run as real processes with the package made absent
(``sys.modules[name] = None`` before ``bench`` starts), whether or not it is installed here.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from bench.extras import EXTRAS, MissingExtra, installed, require
from tests.finished_sweep import finished_sweep

ROOT = Path(__file__).resolve().parent.parent


def bench_without(packages: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``bench ARGS`` in a fresh interpreter in which ``packages`` cannot be imported."""
    block = "; ".join(f"sys.modules[{p!r}] = None" for p in packages)
    code = f"import sys; {block}; from bench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def one_line_exit_2(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_every_optional_package_is_in_the_extra_its_message_names():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for package, extra in EXTRAS.items():
        assert any(req.startswith(package) for req in extras[extra]), (package, extra)
    assert any(req.startswith("pandas") for req in extras["dev"])  # the tests use it


def test_parquet_export_without_pyarrow_names_the_parquet_extra(tmp_path):
    out = tmp_path / "r.parquet"
    proc = bench_without(
        ["pyarrow"], "export", str(finished_sweep()[0]), "--format", "parquet",
        "--out", str(out), cwd=tmp_path,
    )  # fmt: skip
    assert one_line_exit_2(proc) == (
        "bench export: error: --format parquet needs pyarrow, which is not installed: "
        "pip install 'bench[parquet]'; allowed without it: csv, jsonl"
    )
    assert not out.exists()


def test_a_hugging_face_run_without_datasets_names_the_data_extra(tmp_path):
    proc = bench_without(
        ["datasets"], "train", "task.name=text", "task.hf_dataset=wikitext", cwd=tmp_path
    )
    assert one_line_exit_2(proc) == (
        "bench train: error: task.hf_dataset='wikitext' needs datasets, which is not "
        "installed: pip install 'bench[data]'; or use task.paths"
    )
    assert list(tmp_path.iterdir()) == []  # no run directory


def test_a_sweep_whose_cells_need_datasets_is_refused_before_it_starts(tmp_path):
    spec = {
        "name": "hf",
        "base": {"task": {"name": "text", "hf_dataset": "wikitext"}},
        "compare": {"model.norm_placement": ["pre", "post"]},
    }
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec))
    proc = bench_without(["datasets"], "sweep", "s.yaml", "--out", "sw", cwd=tmp_path)
    assert "pip install 'bench[data]'" in one_line_exit_2(proc)
    assert not (tmp_path / "sw").exists()


def test_the_text_task_itself_names_the_extra_when_datasets_is_missing(monkeypatch):
    from bench.config import TaskConfig
    from bench.tasks.text import hf_documents

    monkeypatch.setitem(sys.modules, "datasets", None)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # hf_documents sets both; restored after
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert TaskConfig(name="text", hf_dataset="wikitext").hf_dataset == "wikitext"
    with pytest.raises(MissingExtra, match=r"pip install 'bench\[data\]'"):
        hf_documents("wikitext", 1000)


def test_require_returns_the_module_and_installed_does_not_import(monkeypatch):
    assert require("json", "a test").dumps([]) == "[]"
    assert installed("json") and not installed("surely_not_a_package_here")
    monkeypatch.setitem(sys.modules, "pandas", None)
    assert not installed("pandas")
    with pytest.raises(ImportError, match=r"^x needs pandas, .*: pip install 'bench\[notebook\]'$"):
        require("pandas", "x")  # MissingExtra: an ImportError too, as a notebook expects

"""One reader of a sweep directory: ``bench.sweeps.layout``.

A sweep an earlier bench made still reads (its spec is typed, but judged as a
record, not as a new sweep); the reader loads neither torch nor Optuna; and no
other module of ``bench`` names ``sweep.json`` or ``spec.yaml``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml

from bench.config import ConfigError
from bench.sweeps.layout import SPEC_YAML, SWEEP_JSON, read_sweep_files
from bench.sweeps.spec import load_spec
from tests.test_architecture import loaded_after_import

ROOT = Path(__file__).resolve().parent.parent

# What bench's first sweeps wrote to spec.yaml: compare mode with the then-default
# hyperband pruner (refused in compare mode since), and a base value today's
# RunConfig refuses.
EARLIER_SPEC = {
    "name": "old",
    "description": "",
    "base": {"task": {"name": "copy", "seq_len": 8}, "model": {"d_model": 16, "n_heads": 3}},
    "compare": {"model.norm_placement": ["pre", "post"]},
    "tune": {
        "params": {"train.lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
        "trials": 8,
        "sampler": "tpe",
    },
    "seeds": 0,
    "objective": {"metric": "val/loss", "direction": "minimize"},
    "pruner": "hyperband",
    "budget": {},
    "retry": {"max_retries": 2, "heartbeat_interval": 10},
    "seed": 0,
}


def _sweep_dir(root: Path, spec: dict) -> Path:
    d = root / "old"
    d.mkdir()
    (d / SPEC_YAML).write_text(yaml.safe_dump(spec, sort_keys=False))
    (d / SWEEP_JSON).write_text(json.dumps({"name": "old", "storage": str(d / "journal.log")}))
    return d


def test_a_sweep_an_earlier_bench_made_still_reads_though_it_could_not_start_today(tmp_path):
    d = _sweep_dir(tmp_path, EARLIER_SPEC)
    meta, spec = read_sweep_files(d)
    assert meta["name"] == spec.name == "old"
    assert spec.pruner == "hyperband" and spec.tune is not None and spec.tune.sampler == "tpe"
    assert [key for key, _ in spec.cells()] == ["norm_placement=pre", "norm_placement=post"]
    with pytest.raises(ConfigError, match="pruner='hyperband'"):
        load_spec(d / SPEC_YAML)  # as a new sweep: refused


def test_a_recorded_spec_is_still_typed(tmp_path):
    d = _sweep_dir(tmp_path, {**EARLIER_SPEC, "seeds": "three"})
    with pytest.raises(ConfigError, match=r"spec\.yaml: seeds='three': "):
        read_sweep_files(d)


def test_the_reader_loads_neither_torch_nor_optuna():
    modules = ["bench.sweeps.layout", "bench.sweeps.spec", "bench.validation"]
    assert loaded_after_import(modules, ["torch", "lightning", "optuna"]) == []


def test_only_the_layout_names_the_files_of_a_sweep_directory():
    names = {SWEEP_JSON, SPEC_YAML}
    found = []
    for path in sorted((ROOT / "bench").rglob("*.py")):
        if path.relative_to(ROOT).as_posix() == "bench/sweeps/layout.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []

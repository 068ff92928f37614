"""Shared pieces of the sweep tests: a tiny spec, subprocess runners, PostgreSQL databases."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

PYTHON = sys.executable
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"

# A sweep that trains in about a second per trial on one CPU thread.
TINY: dict[str, Any] = {
    "name": "tiny",
    "base": {
        "task": {
            "name": "copy",
            "seq_len": 6,
            "n_symbols": 8,
            "n_train": 128,
            "n_val": 32,
            "eval_scales": [1],
            "batch_size": 16,
        },
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_len": 32},
        "train": {
            "max_steps": 20,
            "val_every": 10,
            "warmup_steps": 2,
            "log_every": 5,
            "threads": 1,
            "precision": "32-true",  # not auto: no bf16 measurement in each worker
        },
        "tracking": {"mode": "disabled"},
        "diagnostics": {
            "gradients": False,
            "noise_scale": False,
            "attention_entropy": False,
            "throughput": False,
            "figures": False,  # drawing is most of a tiny trial's time; the data stay
        },
    },
    "compare": {"model.norm_placement": ["pre", "post"]},
    "tune": {"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "trials": 2},
    "seeds": 1,
    "pruner": "none",
}


def tiny_spec(**changes: Any) -> dict[str, Any]:
    """TINY with top-level keys replaced (None removes a key)."""
    spec = copy.deepcopy(TINY)
    for k, v in changes.items():
        if v is None:
            spec.pop(k, None)
        else:
            spec[k] = v
    return spec


def one_cell_spec(trials: int, **train: Any) -> dict[str, Any]:
    """One cell (pre-LN), ``trials`` tuning trials, no seed phase; ``train`` keys replaced.

    Long trials (many steps) give a test time to stop a worker mid-trial.
    """
    spec = tiny_spec(
        compare={"model.norm_placement": ["pre"]},
        tune={"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "trials": trials},
        seeds=0,
    )
    spec["base"]["train"].update(train)
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def env_for_tests() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "WANDB_SILENT": "true"}


def worker_cmd(spec: Path, out: Path, worker_id: str, storage: str | None = None) -> list[str]:
    cmd = [
        PYTHON,
        "-m",
        "bench",
        "worker",
        str(spec),
        "--out",
        str(out),
        "--worker-id",
        worker_id,
        "--threads",
        "1",
    ]
    return cmd + (["--storage", storage] if storage else [])


def run_module(module: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", module, *args],
        env=env_for_tests(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def wait_for(predicate, timeout: float = 120, every: float = 0.2) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


def require_postgres() -> None:
    """Skip a test without the PostgreSQL server, except in CI (CI=true), where it must run."""
    import pytest

    if postgres_reachable():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("PostgreSQL on 127.0.0.1:5432 unreachable, and CI must run this test")
    pytest.skip("PostgreSQL on 127.0.0.1:5432 unreachable")


def postgres_reachable() -> bool:
    try:
        import psycopg2

        psycopg2.connect(
            host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=3
        ).close()
        return True
    except Exception:
        return False


@contextmanager
def fresh_database():
    """A new, empty PostgreSQL database for one test; dropped afterwards. Yields its URL."""
    import psycopg2

    name = f"bench_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def assert_refused_in_one_line(code: int, err: str, words: list[str], tmp_path: Path) -> None:
    """A launcher refusal: exit 2, one line naming each of ``words``, and nothing beside the
    spec file ``tiny.yaml`` written into ``tmp_path``."""
    assert code == 2
    assert len(err.splitlines()) == 1, err
    for w in words:
        assert w in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]  # nothing written

"""No code runs from a run's files, and no credential reaches a record.

Real ``bench`` commands (in this process where no process boundary is at stake:
``tests/in_process.py``), a real crafted pickle, the real PostgreSQL server with a
password-protected role, and the real files a sweep and its report write (W&B offline
files included, grepped as bytes).
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from shared import made_once
from sweep_helpers import PG_HOST, PG_PORT, PG_USER, env_for_tests, require_postgres, write_spec

from tests.in_process import bench_in_process

BENCH = [sys.executable, "-m", "bench"]
RUN_ARGS = [
    "task.name=copy",
    "task.seq_len=6",
    "task.n_symbols=8",
    "task.n_train=128",
    "task.n_val=32",
    "task.batch_size=16",
    "model.d_model=16",
    "model.n_layers=1",
    "model.n_heads=2",
    "train.max_steps=20",
    "train.val_every=10",
    "train.warmup_steps=2",
    "train.threads=1",
    "train.progress_bar=false",
    "tracking.mode=disabled",
    "diagnostics.peak_flops=1e11",
    "diagnostics.figures=false",  # the data files only: drawing is most of a tiny run's time
]


def bench(*args: str, env: dict[str, str] | None = None, timeout: float = 240):
    return subprocess.run(
        [*BENCH, *args],
        env=env or env_for_tests(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr[-3000:]
    return lines[0]


def shared_trained_run() -> Path:
    """One finished tiny run (default diagnostics on), made once a session by the real
    ``bench train`` (the ``trained_run`` fixture); tests that change it work on a copy
    (:func:`unfinished_copy`)."""
    folder, (code, stderr) = made_once("trained_run", _train)
    assert code == 0, stderr[-3000:]
    return folder / "run"


def _train(folder: Path) -> tuple[int, str]:
    r = bench_in_process("train", *RUN_ARGS, f"tracking.run_dir={folder / 'run'}")
    return r.returncode, r.stderr


def unfinished_copy(run: Path, dest: Path) -> Path:
    """A copy of ``run`` as a crash would leave it: checkpoint, no summary.json."""
    shutil.copytree(run, dest)
    (dest / "summary.json").unlink()
    return dest


class PlantMarker:
    """Unpickling this creates a file: the proof that a load ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def craft_checkpoint(path: Path, marker: Path) -> None:
    """The run's real checkpoint, plus one object that runs code when unpickled."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt["callbacks"]["planted"] = PlantMarker(marker)
    torch.save(ckpt, path)


# ----------------------------------------------------------------------------- checkpoints


def test_the_checkpoints_bench_writes_load_with_weights_only(trained_run):
    from bench.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(trained_run / "checkpoints" / "last.ckpt")
    assert ckpt["global_step"] == 20 and ckpt["state_dict"]


def test_resume_restores_through_lightning_with_weights_only(trained_run, tmp_path):
    run = unfinished_copy(trained_run, tmp_path / "run")
    r = bench_in_process("train", "--resume", str(run), "train.max_steps=30")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (run / "summary.json").is_file()
    assert '"steps": 30' in (run / "summary.json").read_text()


def test_a_crafted_checkpoint_runs_no_code_on_train_resume(trained_run, tmp_path):
    run = unfinished_copy(trained_run, tmp_path / "run")
    marker = tmp_path / "PWNED"
    craft_checkpoint(run / "checkpoints" / "last.ckpt", marker)
    r = bench_in_process("train", "--resume", str(run))
    line = assert_one_line_error(r)
    assert not marker.exists(), "loading the checkpoint ran code"
    assert "last.ckpt" in line and "refused" in line
    assert not (run / "summary.json").exists()


def test_a_crafted_checkpoint_runs_no_code_on_landscape(trained_run, tmp_path):
    run = unfinished_copy(trained_run, tmp_path / "run")
    marker = tmp_path / "PWNED"
    craft_checkpoint(run / "checkpoints" / "last.ckpt", marker)
    r = bench_in_process("landscape", str(run), "--resolution", "3", "--batches", "1")
    line = assert_one_line_error(r)
    assert not marker.exists(), "loading the checkpoint ran code"
    assert "last.ckpt" in line and "refused" in line


# ----------------------------------------------------------------------------- credentials

PLANTED_PASSWORD = "plantedpw123"
PLANTED_KEY = "plantedwandbkey0123456789abcdef0123456789"


@pytest.fixture
def pg_with_password():
    """A PostgreSQL role with a password and its own database; yields the URL with user:pw."""
    import psycopg2

    require_postgres()
    tag = uuid.uuid4().hex[:8]
    role, db = f"h1_security_{tag}", f"h1_security_{tag}"
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PLANTED_PASSWORD}'")
        cur.execute(f'CREATE DATABASE "{db}" OWNER {role}')
    try:
        yield f"postgresql+psycopg2://{role}:{PLANTED_PASSWORD}@{PG_HOST}:{PG_PORT}/{db}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            cur.execute(f"DROP ROLE IF EXISTS {role}")
        admin.close()


def _secret_spec(name: str) -> dict:
    from sweep_helpers import tiny_spec

    spec = tiny_spec(
        name=name,
        compare={"model.norm_placement": ["pre", "post"]},
        tune={"params": {"train.lr": {"low": 1e-3, "high": 1e-2, "log": True}}, "trials": 1},
        seeds=1,
    )
    spec["base"]["tracking"] = {"mode": "offline"}  # W&B offline files are records too
    return spec


def files_holding(root: Path, *secrets: str) -> list[str]:
    """Every file under ``root`` whose bytes contain one of ``secrets``."""
    found = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            data = p.read_bytes()
            found += [f"{p} holds {s!r}" for s in secrets if s.encode() in data]
    return found


@pytest.mark.slow
@pytest.mark.postgres
def test_no_password_or_api_key_reaches_any_file_a_sweep_and_its_report_write(
    tmp_path, pg_with_password
):
    env = {**env_for_tests(), "WANDB_API_KEY": PLANTED_KEY, "WANDB_MODE": "offline"}
    spec = write_spec(tmp_path / "secret.yaml", _secret_spec("secret"))
    out, node2, report = tmp_path / "sweep", tmp_path / "node2", tmp_path / "report"
    url = pg_with_password
    # the launcher, then a second machine's worker joining, then the report
    sweep = bench("sweep", str(spec), "--storage", url, "--out", str(out), env=env, timeout=400)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    worker = bench("worker", str(spec), "--storage", url, "--out", str(node2), env=env)
    assert worker.returncode == 0, worker.stderr[-3000:]
    rep = bench("report", str(out), "--storage", url, "--out", str(report), env=env)
    assert rep.returncode == 0, rep.stderr[-3000:]

    assert list(out.rglob("*.wandb")), "the sweep wrote no W&B offline run to check"
    assert (report / "index.html").is_file() and (report / "report.md").is_file()
    assert "***" in (out / "sweep.json").read_text()  # the command is recorded, redacted
    assert "***" in (report / "index.html").read_text()
    leaks = files_holding(tmp_path, PLANTED_PASSWORD, PLANTED_KEY)
    for r in (sweep, worker, rep):
        leaks += [f"output holds {s!r}" for s in (PLANTED_PASSWORD, PLANTED_KEY)
                  if s in r.stdout + r.stderr]  # fmt: skip
    assert leaks == []


def test_the_readme_postgresql_url_form_works_with_bench_worker(tmp_path):
    """``bench worker sweeps/x.yaml --storage postgresql://host/db``, as the README shows."""
    import psycopg2

    require_postgres()
    from sweep_helpers import tiny_spec

    db = f"h1_security_readme_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{db}"')
    try:
        spec = write_spec(
            tmp_path / "x.yaml",
            tiny_spec(
                compare={"model.norm_placement": ["pre"]},
                seeds=0,
                tune={"params": {"train.lr": {"low": 1e-3, "high": 1e-2}}, "trials": 1},
            ),
        )
        env = {**env_for_tests(), "PGUSER": PG_USER}  # the README's URL names no user
        r = bench_in_process(
            "worker", str(spec), "--storage", f"postgresql://{PG_HOST}/{db}",
            "--out", str(tmp_path / "sweep"), env=env,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        import optuna

        from bench.sweeps.storage import open_storage

        storage = open_storage(f"postgresql://{PG_USER}@{PG_HOST}/{db}")
        trials = optuna.load_study(study_name="tiny/tune/norm_placement=pre", storage=storage)
        assert [t.state.name for t in trials.get_trials()] == ["COMPLETE"]
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        admin.close()

"""Commands that do not train start without torch or Lightning (issue 15, item 4).

Each check runs ``bench.cli.main(ARGV)`` in a fresh interpreter and reads which heavy
modules ended up in ``sys.modules``. Timings are not asserted here; they live in
``tools/cli_latency.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sweep_helpers import tiny_spec, write_spec

HEAVY = ("torch", "lightning", "optuna", "wandb", "matplotlib")

PROBE = """
import contextlib, io, json, sys
from bench.cli import main
argv = json.loads(sys.argv[1])
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
heavy = [m for m in {heavy!r} if m in sys.modules]
print(json.dumps({{"code": code, "stdout": out.getvalue(), "heavy": heavy}}))
"""


def run_probe(*argv: str) -> dict:
    """``main(argv)`` in a fresh interpreter: its exit code, stdout and heavy modules loaded."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps(list(argv))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("argv", "shows"),
    [
        (["--help"], "Which transformer architecture choice"),
        (["variants"], "model.pos_encoding"),
        (["report", "--help"], "SWEEP_DIR"),
        (["sweep", "--help"], "--workers"),
        (["worker", "--help"], "--worker-id"),
        (["dashboard", "--help"], "--port"),
    ],
)
def test_commands_that_do_not_train_import_no_torch_lightning_or_optuna(argv, shows):
    result = run_probe(*argv)
    assert result["code"] == 0
    assert shows in result["stdout"]
    assert result["heavy"] == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["attention", "nowhere"], "nowhere: no such directory"),
        (["attention", "."], ".: not a run directory (no config.yaml)"),
    ],
)
def test_attention_with_a_wrong_path_fails_before_numpy_or_torch_load(argv, says):
    code = (
        "import sys\nfrom bench.cli import main\ncode = main(sys.argv[1:])\n"
        "print([m for m in ('numpy', 'torch') if m in sys.modules], file=sys.stderr)\n"
        "sys.exit(code)"
    )
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert says in lines[0] and lines[1:] == ["[]"]  # one line, then: nothing heavy loaded


def test_building_the_parser_imports_nothing_heavy():
    code = (
        "import sys; from bench.cli import build_parser; build_parser(); "
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_status_reads_the_storage_with_optuna_but_imports_no_torch_or_lightning(
    tmp_path: Path,
):
    from bench.sweeps.layout import prepare_sweep

    spec = write_spec(tmp_path / "s.yaml", tiny_spec())
    prepare_sweep(spec, out=tmp_path / "sweep", check_data=False)
    result = run_probe("status", str(tmp_path / "sweep"))
    assert result["code"] == 0
    assert "norm_placement=pre" in result["stdout"]
    assert "optuna" in result["heavy"]
    assert "torch" not in result["heavy"] and "lightning" not in result["heavy"]


def test_the_probe_sees_torch_when_a_command_path_imports_it():
    """The check above can fail: a module that imports torch shows up in the probe."""
    code = f"import sys, bench.model; print([m for m in {HEAVY!r} if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torch" in proc.stdout and "lightning" not in proc.stdout


def test_status_lists_the_diagnoses_of_finished_trials_without_torch(tmp_path: Path):
    import optuna
    from optuna.trial import TrialState, create_trial

    from bench.diagnoses import Diagnosis
    from bench.sweeps.layout import open_sweep_dir, prepare_sweep
    from bench.sweeps.study import plan

    spec = write_spec(tmp_path / "s.yaml", tiny_spec())
    prepare_sweep(spec, out=tmp_path / "sweep", check_data=False)
    sweep = open_sweep_dir(tmp_path / "sweep")
    run_dir = tmp_path / "sweep" / "runs" / "tune-pre-t0000"
    run_dir.mkdir(parents=True)
    found = Diagnosis("uniform_attention", "uniform attention", "layer_0 stayed at 2.07 of 2.08",
                      "Xiong et al. 2020", "init=auto")  # fmt: skip
    (run_dir / "summary.json").write_text(
        json.dumps({"status": "completed", "diagnoses": [found.as_dict()]})
    )
    cell = plan(sweep.spec)[0]
    study = optuna.load_study(study_name=cell.study, storage=sweep.open_storage())
    study.add_trial(
        create_trial(state=TrialState.COMPLETE, value=1.0,
                     user_attrs={"run_dir": str(run_dir), "phase": "tune", "status": "completed"})
    )  # fmt: skip
    result = run_probe("status", str(tmp_path / "sweep"))
    assert result["code"] == 0
    out = result["stdout"]
    assert "diagnoses and watches of finished trials" in out
    assert "uniform attention" in out and "layer_0 stayed at 2.07 of 2.08" in out
    assert "torch" not in result["heavy"] and "lightning" not in result["heavy"]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "model.norm_placement=banana"],
        ["train", "--resume", "/no/such/run"],
        ["landscape", "/no/such/run"],
        ["worker", "/no/such/spec.yaml"],
        ["throughput", "--vary", "no-equals-sign"],
    ],
    ids=["train-config", "train-resume", "landscape", "worker", "throughput-vary"],
)
def test_bad_input_to_a_command_that_trains_is_refused_before_torch_loads(argv):
    result = run_probe(*argv)
    assert result["code"] == 2
    assert "torch" not in result["heavy"] and "lightning" not in result["heavy"], result["heavy"]


ALL_USAGE_ERRORS = """
import contextlib, io, json, os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import usage_errors
from bench.cli import main
heavy = {heavy!r}
usage_errors.make_files(Path(sys.argv[2]))
os.chdir(sys.argv[2])
out = {{}}
for inv in usage_errors.INVOCATIONS:
    saved = {{name: sys.modules.get(name) for name in inv.absent}}
    sys.modules.update({{name: None for name in inv.absent}})  # as if not installed
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(inv.args))
        except SystemExit as e:
            code = e.code
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module
    out[inv.line] = [code, [m for m in heavy if m in sys.modules]]
print(json.dumps(out))
"""


def test_no_usage_error_of_any_command_loads_torch_or_another_heavy_package(tmp_path: Path):
    # Every invocation tools/usage_errors.py times, one after the other in one fresh
    # interpreter: a heavy module any of them imported stays in sys.modules.
    heavy = (*HEAVY, "scipy", "numpy", "pandas", "submitit")
    tools = Path(__file__).resolve().parents[1] / "tools"
    proc = subprocess.run(
        [sys.executable, "-c", ALL_USAGE_ERRORS.format(heavy=heavy), str(tools), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) >= 30
    assert {line: code for line, (code, _) in results.items() if code != 2} == {}
    assert {line: mods for line, (_, mods) in results.items() if mods} == {}


def test_a_config_its_task_cannot_run_is_refused_with_torch_but_before_lightning_loads(
    tmp_path: Path,
):
    # checking the data needs torch (the task builds tensors), not the Trainer
    result = run_probe("train", "task.name=text", f"task.paths=[{tmp_path / 'no-corpus'}]")
    assert result["code"] == 2
    assert "lightning" not in result["heavy"], result["heavy"]

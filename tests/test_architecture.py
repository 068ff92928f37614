"""The import rules of ARCHITECTURE.md hold.

Each rule is checked in a fresh interpreter (this test process has long since
imported torch), and the model package's rule also statically, so that an
import inside a function of ``bench/model/`` is caught too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from import_graph import build_graph, cycles, upward_imports

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "bench" / "model"
REPORT_DIR = ROOT / "bench" / "report"


def loaded_after_import(modules: list[str], watched: list[str]) -> list[str]:
    """Which of ``watched`` a fresh interpreter has loaded after importing ``modules``."""
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(','.join(w for w in {watched!r} if w in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return out.split(",") if out else []


def test_the_model_package_loads_no_lightning_wandb_or_optuna():
    watched = ["lightning", "pytorch_lightning", "wandb", "optuna"]
    modules = ["bench.model", *(f"bench.model.{p.stem}" for p in sorted(MODEL_DIR.glob("*.py")))]
    assert loaded_after_import(modules, watched) == []


FORBIDDEN_IN_MODEL = {"lightning", "pytorch_lightning", "wandb", "optuna"}


def forbidden_imports(source: str, forbidden: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every absolute import of a ``forbidden`` top-level package, at any depth."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.split(".")[0] in forbidden]
    return sorted(found)


def test_no_file_of_the_model_package_imports_lightning_wandb_or_optuna():
    files = sorted(MODEL_DIR.rglob("*.py"))
    assert len(files) >= 8  # norms, positional, attention, feedforward, block, ...
    found = {
        str(path.relative_to(ROOT)): bad
        for path in files
        if (bad := forbidden_imports(path.read_text(), FORBIDDEN_IN_MODEL))
    }
    assert found == {}


def test_the_static_check_catches_imports_hidden_in_functions_and_type_checking_blocks():
    source = (
        "import torch\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import wandb.sdk\n"
        "def f():\n"
        "    from lightning.pytorch import Trainer\n"
        "    import optuna\n"
        "    from .norms import NORMS\n"
    )
    found = forbidden_imports(source, FORBIDDEN_IN_MODEL)
    assert found == [(4, "wandb.sdk"), (6, "lightning.pytorch"), (7, "optuna")]


@pytest.mark.parametrize(
    "modules",
    [
        ["bench.report"],
        [
            ".".join(p.relative_to(ROOT).with_suffix("").parts)
            for p in sorted(REPORT_DIR.rglob("*.py"))
        ],
    ],
    ids=["package", "every-submodule"],
)
def test_the_report_loads_no_torch_or_lightning(modules):
    assert loaded_after_import(modules, ["torch", "lightning", "pytorch_lightning"]) == []


@pytest.mark.parametrize("module", ["bench.config", "bench.tasks.baseline"])
def test_configs_and_task_baselines_load_no_torch(module):
    assert loaded_after_import([module], ["torch", "lightning"]) == []


@pytest.mark.parametrize("module", ["bench.listing", "bench.compare"])
def test_ls_and_compare_load_no_torch_lightning_or_optuna(module):
    assert loaded_after_import([module], ["torch", "lightning", "optuna"]) == []


@pytest.mark.parametrize(
    "module",
    [
        "bench.sweeps.slurm.launcher",
        "bench.sweeps.slurm.options",
        "bench.sweeps.slurm.checks",
        "bench.sweeps.recovery.resume",
    ],
)
def test_the_slurm_launcher_and_resumption_load_no_torch(module):
    assert loaded_after_import([module], ["torch", "lightning"]) == []


def test_the_sweep_launcher_checks_data_with_torch_but_without_lightning():
    # `bench sweep` builds every cell's data before it starts workers; only workers train.
    modules = ["bench.sweeps.launcher", "bench.tasks.registry", "bench.training.prepare"]
    assert loaded_after_import(modules, ["torch", "lightning"]) == ["torch"]


def test_export_loads_no_torch_or_lightning():
    assert loaded_after_import(["bench.export"], ["torch", "lightning"]) == []


def test_the_training_package_may_load_lightning_but_its_cheap_modules_do_not():
    # train_run needs Lightning; the package itself and what sweep launchers import
    # from it (resources: cpu_slots) and checkpoint reading do not.
    watched = ["torch", "lightning"]
    assert loaded_after_import(["bench.training.run"], watched) == watched
    assert loaded_after_import(["bench.training"], watched) == []
    assert loaded_after_import(["bench.training.resources"], watched) == []
    assert "lightning" not in loaded_after_import(["bench.training.checkpoint"], watched)


def test_no_file_of_the_model_package_imports_the_training_package():
    found = {
        str(path.relative_to(ROOT)): bad
        for path in sorted(MODEL_DIR.rglob("*.py"))
        if (bad := forbidden_imports(path.read_text(), {"bench"}))
        and any(m.startswith(("bench.training", "bench.diagnostics")) for _, m in bad)
    }
    assert found == {}


def test_the_subprocess_check_sees_a_module_that_loads_torch():
    # The helper must be able to fail: the model package loads torch and not Lightning.
    assert loaded_after_import(["bench.model"], ["torch", "lightning"]) == ["torch"]


# ----------------------------------------------------------------------------- the graph

# Upward imports that are the point: each names why.
ALLOWED_UPWARD = {
    # A Slurm array task runs `bench worker` in its own process through the command's
    # entry point, so its errors are the command's one-line errors.
    "bench.sweeps.slurm.launcher -> bench.cli.main",
}


def test_no_bench_module_imports_itself_back_through_others():
    # function-level imports included: they close a cycle at run time all the same
    assert cycles(build_graph()) == []


def test_every_package_imports_only_its_layer_and_the_layers_below():
    # ARCHITECTURE.md: cli -> claims -> report -> sweeps -> training -> diagnostics ->
    # model/tasks -> config and the small modules; "diagnostics never imports training"
    found = [e.split(" (line")[0] for e in upward_imports(build_graph())]
    assert sorted(set(found) - ALLOWED_UPWARD) == []
    assert set(found) >= ALLOWED_UPWARD, "an allowed exception is gone: drop it from the list"


def test_the_graph_checks_catch_a_cycle_closed_in_a_function_and_an_upward_import(tmp_path):
    pkg = tmp_path / "bench"
    (pkg / "training").mkdir(parents=True)
    (pkg / "diagnostics").mkdir()
    for init in (pkg, pkg / "training", pkg / "diagnostics"):
        (init / "__init__.py").write_text("")
    (pkg / "training" / "run.py").write_text("from bench.diagnostics import grads\n")
    (pkg / "diagnostics" / "grads.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from bench.training import typed_only\n"
        "def f():\n    from bench.training.run import x\n"
    )
    graph = build_graph(tmp_path)
    assert graph["bench.diagnostics.grads"] == {"bench.training.run": 5}
    assert cycles(graph) == [["bench.diagnostics.grads", "bench.training.run"]]
    assert upward_imports(graph) == ["bench.diagnostics.grads -> bench.training.run (line 5)"]


def _defines_callback(tree: ast.Module) -> bool:
    bases = {"Callback", "Diagnostic", "L.Callback"}
    return any(
        isinstance(n, ast.ClassDef) and any(ast.unparse(b) in bases for b in n.bases)
        for n in tree.body
    )


def _draws(tree: ast.Module) -> bool:
    return any(
        isinstance(n, ast.Import | ast.ImportFrom)
        and any((getattr(n, "module", None) or a.name).startswith("matplotlib") for a in n.names)
        for n in ast.walk(tree)
    )


def _registers_command(tree: ast.Module) -> bool:
    return any(
        isinstance(n, ast.FunctionDef)
        and any(ast.unparse(d).startswith("command(") for d in n.decorator_list)
        for n in tree.body
    )


LIGHTNING_TYPES = ("L.Trainer", "L.LightningModule", "Trainer", "LightningModule")


def _computes(tree: ast.Module) -> bool:
    """A public module-level function that takes no Lightning object: a pure computation.

    Helpers that read a Lightning run (``model_of(pl_module)``) belong beside its callback.
    """
    return any(
        isinstance(n, ast.FunctionDef)
        and not n.name.startswith("_")
        and not any(
            a.annotation is not None and ast.unparse(a.annotation) in LIGHTNING_TYPES
            for a in n.args.args
        )
        for n in tree.body
    )


def test_no_module_is_two_of_a_callback_a_figure_a_command_and_a_computation():
    roles = {}
    for path in sorted((ROOT / "bench").rglob("*.py")):
        tree = ast.parse(path.read_text())
        held = [
            role
            for role, has in (
                ("callback", _defines_callback(tree)),
                ("figure", _draws(tree)),
                ("command", _registers_command(tree)),
            )
            if has
        ]
        if "callback" in held and _computes(tree):
            held.append("computation")
        if len(held) > 1:
            roles[str(path.relative_to(ROOT))] = held
    assert roles == {}


def test_the_role_check_sees_a_callback_that_draws():
    tree = ast.parse(
        "import matplotlib.pyplot as plt\nclass C(Diagnostic):\n    pass\n"
        "@command('x', 'y', f)\ndef cmd(args):\n    pass\n"
    )
    assert _defines_callback(tree) and _draws(tree) and _registers_command(tree)


def test_the_role_check_tells_a_pure_computation_from_a_helper_reading_a_lightning_run():
    helper = (
        "def model_of(pl_module: L.LightningModule) -> nn.Module:\n    return pl_module.model\n"
    )
    pure = "def resolve_steps(fractions: list[float], total: int) -> list[int]:\n    return []\n"
    assert not _computes(ast.parse(helper)) and _computes(ast.parse(pure))

"""Starting a W&B run the way bench does: W&B Launch's inputs are applied only when a
Launch job can have staged some (its module is imported), so an ordinary run does not
pay for importing W&B Launch (real offline runs, read back from their ``.wandb`` files)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from wandb_runs import read_run

from bench.wandb_settings import LAUNCH_INPUTS, finish_run, wandb_settings


def test_an_offline_run_starts_and_finishes_without_importing_wandb_launch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    monkeypatch.delitem(sys.modules, LAUNCH_INPUTS, raising=False)  # as in a fresh process
    run = wandb.init(mode="offline", dir=str(tmp_path), settings=wandb_settings("offline"))
    run.log({"x": 1.0})
    finish_run(run, 0)
    assert LAUNCH_INPUTS not in sys.modules
    recorded = read_run(tmp_path)
    assert recorded.finished and recorded.series("x") == [(0, 1.0)]


def test_inputs_a_launch_job_staged_are_still_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    from wandb.sdk import wandb_run
    from wandb.sdk.launch.inputs import internal  # what a Launch job imports to stage inputs

    applied: list[Any] = []
    monkeypatch.setattr(internal.StagedLaunchInputs, "apply", lambda self, run: applied.append(run))
    wandb_settings("offline")  # what bench calls before every wandb.init
    run = object()
    wandb_run.Run._detect_and_apply_job_inputs(run)  # type: ignore[arg-type]
    assert applied == [run]


def test_without_the_launch_module_nothing_is_imported_or_applied(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from wandb.sdk import wandb_run

    monkeypatch.delitem(sys.modules, LAUNCH_INPUTS, raising=False)
    wandb_settings("offline")
    wandb_run.Run._detect_and_apply_job_inputs(object())  # type: ignore[arg-type]
    assert LAUNCH_INPUTS not in sys.modules

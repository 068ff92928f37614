"""Replicates that vary the data: with ``seed_data`` a seed run draws its task from its seed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from bench.sweeps.layout import Sweep
from bench.sweeps.objective import TrialJob, trial_config
from bench.sweeps.spec import parse_spec
from bench.tasks import build_datamodule
from tests.sweep_helpers import tiny_spec


def _seed_run_config(tmp_path: Path, seed_data: bool | None, seed: int):
    data = tiny_spec(tune=None)
    if seed_data is not None:
        data["seed_data"] = seed_data
    sweep = Sweep(parse_spec(data, "test"), tmp_path, f"sqlite:///{tmp_path}/s.db")
    job = TrialJob(
        study=SimpleNamespace(study_name="seeds"),  # type: ignore[arg-type]
        trial=SimpleNamespace(number=seed),  # type: ignore[arg-type]
        phase="seed",
        cell="pre",
        overrides={"model.norm_placement": "pre"},
        seed=seed,
    )
    return trial_config(sweep, job, {}, threads=1)


def _validation_inputs(cfg) -> torch.Tensor:
    dm = build_datamodule(cfg.task, cfg.model.arch)
    dm.setup()
    return torch.stack([torch.as_tensor(ex["input_ids"]) for ex in dm.val_datasets[0]])


def test_with_seed_data_two_seed_runs_of_a_cell_draw_different_validation_data(tmp_path):
    one, two = (_seed_run_config(tmp_path, True, s) for s in (1, 2))
    assert (one.task.seed, two.task.seed) == (1, 2)
    assert (one.train.seed, two.train.seed) == (1, 2)
    assert not torch.equal(_validation_inputs(one), _validation_inputs(two))


@pytest.mark.parametrize("seed_data", [None, False])
def test_without_seed_data_seed_runs_share_the_task_as_before(tmp_path, seed_data):
    one, two = (_seed_run_config(tmp_path, seed_data, s) for s in (1, 2))
    assert one.task.seed == two.task.seed == 0
    assert one.train.seed != two.train.seed
    assert torch.equal(_validation_inputs(one), _validation_inputs(two))

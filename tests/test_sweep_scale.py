"""A size ladder in a sweep spec: every cell at every rung, training length following size."""

from __future__ import annotations

import math

import pytest
from sweep_helpers import tiny_spec

from bench.config import ConfigError, build_run_config
from bench.sweeps.spec import parse_spec, run_config_overrides
from bench.training.resources import count_params

LADDER = {"model.d_model": [16, 32, 64], "model.n_heads": [2, 2, 4]}


def ladder_spec(**scale):
    return tiny_spec(compare={"model.norm_placement": ["pre", "post"]},
                     scale={"ladder": LADDER, **scale})  # fmt: skip


def test_every_cell_runs_at_every_rung_smallest_first():
    spec = parse_spec(ladder_spec())
    keys = [k for k, _ in spec.cells()]
    assert keys == [
        "norm_placement=pre,d_model=16,n_heads=2",
        "norm_placement=post,d_model=16,n_heads=2",
        "norm_placement=pre,d_model=32,n_heads=2",
        "norm_placement=post,d_model=32,n_heads=2",
        "norm_placement=pre,d_model=64,n_heads=4",
        "norm_placement=post,d_model=64,n_heads=4",
    ]
    assert all("train.max_steps" not in o for _, o in spec.cells())  # budget: steps, the spec's
    assert spec.ladder_keys == ["model.d_model", "model.n_heads"]


def test_tokens_per_param_gives_each_rung_steps_in_proportion_to_its_size():
    spec = parse_spec(ladder_spec(budget="tokens_per_param", tokens_per_param=2.0))
    steps = {}
    for key, overrides in spec.cells():
        cfg = build_run_config(overrides={**run_config_overrides(spec), **overrides})
        per_step = cfg.task.batch_size * cfg.task.seq_len
        assert overrides["train.max_steps"] == math.ceil(2.0 * count_params(cfg) / per_step)
        steps[key.split(",", 1)[1]] = cfg.train.max_steps
    assert (
        steps["d_model=16,n_heads=2"]
        < steps["d_model=32,n_heads=2"]
        < steps["d_model=64,n_heads=4"]
    )


def test_fixed_tokens_gives_every_rung_the_same_steps():
    spec = parse_spec(ladder_spec(budget="tokens", tokens=64_000))
    per_step = spec.base["task"]["batch_size"] * spec.base["task"]["seq_len"]
    assert {o["train.max_steps"] for _, o in spec.cells()} == {math.ceil(64_000 / per_step)}


@pytest.mark.parametrize(
    ("scale", "compare", "match"),
    [
        ({"ladder": {"model.d_model": [16, 32], "model.n_heads": [2]}}, None, "lists are zipped"),
        ({"ladder": {"model.d_model": [16]}}, None, "two rungs or more"),
        ({"ladder": LADDER, "budget": "tokens_per_param"}, None, "needs 'tokens_per_param'"),
        ({"ladder": LADDER, "budget": "flops"}, None, "scale.budget"),
        ({"ladder": LADDER}, {"model.d_model": [16, 32]}, "scale.ladder and compare both set model.d_model"),
    ],
)  # fmt: skip
def test_a_bad_ladder_is_one_line_naming_what_is_wrong(scale, compare, match):
    spec = tiny_spec(compare=compare or {"model.norm_placement": ["pre"]}, scale=scale)
    with pytest.raises(ConfigError, match=match) as e:
        parse_spec(spec, "s.yaml")
    assert "\n" not in str(e.value)


def test_a_rung_the_model_refuses_is_named():
    spec = tiny_spec(compare={"model.norm_placement": ["pre"]},
                     scale={"ladder": {"model.d_model": [16, 30], "model.n_heads": [2, 4]}})  # fmt: skip
    with pytest.raises(ConfigError, match="d_model"):
        parse_spec(spec, "s.yaml")


def test_dry_run_prints_rungs_cells_runs_and_each_rungs_time(tmp_path, capsys):
    from sweep_helpers import write_spec

    from bench.sweeps.launcher import run_sweep

    spec = write_spec(
        tmp_path / "s.yaml", ladder_spec(budget="tokens_per_param", tokens_per_param=2.0)
    )
    assert run_sweep(spec, workers=2, dry_run=True, out=tmp_path / "sweep") == 0
    out = capsys.readouterr().out
    assert "size ladder: 3 rungs x 2 cells x 3 runs; budget: tokens_per_param" in out
    lines = [line for line in out.splitlines() if line.startswith("  d_model=")]
    assert [line.split(":")[0].strip() for line in lines] == [
        "d_model=16, n_heads=2", "d_model=32, n_heads=2", "d_model=64, n_heads=4"]  # fmt: skip
    params = [
        int(line.split("about ")[1].split(" parameters")[0].replace(",", "")) for line in lines
    ]
    steps = [int(line.split("parameters, ")[1].split(" steps")[0]) for line in lines]
    assert params == sorted(params) and steps == sorted(steps) and steps[0] < steps[-1]
    assert "18 runs of the steps and step times above" in out
    assert not (tmp_path / "sweep").exists()

"""The sweep spec: what is accepted, what is refused (one line, key path), and that a
refused spec creates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import tiny_spec, write_spec

from bench.config import ConfigError
from bench.sweeps.layout import prepare_sweep
from bench.sweeps.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[1]


def refuse(spec: dict, match: str) -> str:
    with pytest.raises(ConfigError, match=match) as e:
        parse_spec(spec, "s.yaml")
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_compare_spec_has_one_cell_per_combination():
    spec = parse_spec(
        tiny_spec(
            compare={
                "model.norm_placement": ["pre", "post"],
                "model.pos_encoding": ["learned", "rope", "alibi"],
            }
        )
    )
    keys = [k for k, _ in spec.cells()]
    assert len(keys) == 6 and len(set(keys)) == 6
    assert "norm_placement=post,pos_encoding=rope" in keys
    assert spec.trials_per_cell() == 2


def test_param_shorthands_infer_int_float_and_categorical():
    spec = parse_spec(
        tiny_spec(
            tune={
                "params": {
                    "train.lr": {"low": 1e-3, "high": 1e-2, "log": True},
                    "train.warmup_steps": {"low": 0, "high": 10},
                    "train.schedule": ["cosine", "constant"],
                },
                "trials": 3,
            }
        )
    )
    kinds = {k: p.kind for k, p in spec.tune.params.items()}
    assert kinds == {
        "train.lr": "float",
        "train.warmup_steps": "int",
        "train.schedule": "categorical",
    }


def test_grid_sampler_budget_is_at_most_the_grid_size():
    spec = parse_spec(
        tiny_spec(
            tune={
                "params": {"train.schedule": ["cosine", "constant"]},
                "trials": 10,
                "sampler": "grid",
            }
        )
    )
    assert spec.trials_per_cell() == 2


def test_unknown_top_level_key_is_refused_with_allowed_keys():
    msg = refuse({**tiny_spec(), "seedz": 3}, "unknown key 'seedz'")
    assert "allowed:" in msg and "seeds" in msg


def test_unknown_nested_key_is_refused_with_its_path():
    refuse(
        tiny_spec(tune={"params": {"train.lr": {"low": 1e-3, "hihg": 1}}}),
        r"tune\.params\.train\.lr\.hihg",
    )


def test_unknown_axis_value_names_the_axis_and_allowed_values():
    msg = refuse(
        tiny_spec(compare={"model.norm_placement": ["pre", "middle"]}),
        r"compare\.model\.norm_placement='middle'",
    )
    assert "post" in msg


def test_unknown_axis_name_is_refused():
    refuse(
        tiny_spec(compare={"model.norm_position": ["pre"]}),
        r"compare\.model\.norm_position.*unknown key",
    )


def test_empty_search_space_is_refused():
    refuse(tiny_spec(tune={"params": {}, "trials": 2}), "empty search space")


def test_empty_axis_is_refused():
    refuse(
        tiny_spec(compare={"model.norm_placement": []}),
        r"compare\.model\.norm_placement: no values",
    )


def test_range_with_low_above_high_is_refused():
    refuse(
        tiny_spec(tune={"params": {"train.lr": {"low": 0.1, "high": 0.01}}}),
        r"tune\.params\.train\.lr.*low=0\.1 > high=0\.01",
    )


def test_tuned_value_outside_the_run_config_range_is_refused():
    refuse(
        tiny_spec(tune={"params": {"model.dropout": {"low": 0.0, "high": 1.0}}}),
        r"tune\.params\.model\.dropout=1\.0",
    )
    refuse(
        tiny_spec(tune={"params": {"train.warmup_steps": {"low": -5, "high": 3}}}),
        r"tune\.params\.train\.warmup_steps=-5",
    )


def test_invalid_base_config_is_refused_with_its_key():
    bad = tiny_spec()
    bad["base"]["model"]["n_heads"] = 3  # 16 is not divisible by 3
    refuse(bad, r"base: model\.d_model=16 must be divisible by model\.n_heads=3")


def test_cell_combination_that_breaks_the_config_is_refused():
    refuse(tiny_spec(compare={"model.n_heads": [1, 2, 3]}), r"compare\.model\.n_heads=3")


def test_compare_and_search_together_are_refused():
    refuse(
        {**tiny_spec(), "search": {"params": {"train.lr": {"low": 1e-3, "high": 1e-2}}}},
        "exactly one of",
    )


def test_several_objectives_need_search_mode():
    refuse(
        tiny_spec(
            objective=[
                {"metric": "val/loss"},
                {"metric": "throughput/tokens_per_sec", "direction": "maximize"},
            ]
        ),
        "search mode",
    )


def test_multi_objective_search_disables_the_default_pruner_and_refuses_an_explicit_one():
    objectives = [
        {"metric": "val/loss"},
        {"metric": "throughput/tokens_per_sec", "direction": "maximize"},
    ]
    search = {
        "params": {
            "model.pos_encoding": ["learned", "rope"],
            "train.lr": {"low": 1e-3, "high": 1e-2},
        },
        "trials": 4,
    }
    spec = parse_spec(
        tiny_spec(compare=None, tune=None, search=search, objective=objectives, pruner=None)
    )
    assert spec.multi_objective and spec.effective_pruner == "none"
    assert [k for k, _ in spec.cells()] == ["search"]
    refuse(
        tiny_spec(compare=None, tune=None, search=search, objective=objectives, pruner="hyperband"),
        "single-objective only",
    )


def test_grid_sampler_needs_a_step_for_float_ranges():
    refuse(
        tiny_spec(tune={"params": {"train.lr": {"low": 1e-3, "high": 1e-2}}, "sampler": "grid"}),
        "grid sampler needs",
    )


def test_variant_in_base_is_applied_and_explicit_model_keys_win(tmp_path):
    spec = tiny_spec()
    spec["base"]["variant"] = "llama"
    parsed = parse_spec(spec)
    from bench.sweeps.spec import build_cell_config

    cfg = build_cell_config(parsed, {}, "base")
    assert cfg.variant == "llama" and cfg.model.d_model == 16


@pytest.mark.parametrize(
    ("change", "storage"),
    [
        ({"seedz": 1}, None),
        ({"compare": {"model.norm_placement": ["sideways"]}}, None),
        ({}, "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"),
    ],
)
def test_bad_input_creates_no_sweep_directory(tmp_path, change, storage):
    spec = write_spec(tmp_path / "s.yaml", {**tiny_spec(), **change})
    out = tmp_path / "sweep"
    with pytest.raises(ConfigError) as e:
        prepare_sweep(spec, storage=storage, out=out)
    assert "\n" not in str(e.value)
    assert not out.exists()


def test_unreachable_storage_message_names_the_storage(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tiny_spec())
    with pytest.raises(ConfigError, match=r"storage=postgresql.*127\.0\.0\.1:1.*cannot connect"):
        prepare_sweep(
            spec, storage="postgresql+psycopg2://postgres:secret@127.0.0.1:1/x", out=tmp_path / "o"
        )


def test_resuming_a_sweep_directory_with_a_different_spec_is_refused(tmp_path):
    out = tmp_path / "sweep"
    prepare_sweep(write_spec(tmp_path / "a.yaml", tiny_spec()), out=out)
    with pytest.raises(ConfigError, match="different spec"):
        prepare_sweep(write_spec(tmp_path / "b.yaml", tiny_spec(pruner="chance")), out=out)


def test_prepare_creates_the_documented_layout(tmp_path):
    import json

    out = tmp_path / "sweep"
    sweep = prepare_sweep(
        write_spec(tmp_path / "a.yaml", tiny_spec()), out=out, command="bench sweep a.yaml"
    )
    meta = json.loads((out / "sweep.json").read_text())
    assert meta["name"] == "tiny" and meta["command"] == "bench sweep a.yaml"
    assert Path(meta["storage"]) == (out / "journal.log").resolve() == Path(sweep.storage_url)
    assert (
        (out / "spec.yaml").is_file()
        and (out / "runs").is_dir()
        and (out / "journal.log").is_file()
    )
    assert load_spec(out / "spec.yaml") == sweep.spec


def test_the_shipped_sweep_specs_are_valid():
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        load_spec(path)

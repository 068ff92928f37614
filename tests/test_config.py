"""Configuration loading: files, presets, dotted overrides, one-line errors."""

from __future__ import annotations

import pytest

from bench.config import (
    ConfigError,
    HessianConfig,
    LandscapeConfig,
    ModelConfig,
    RunConfig,
    axes,
    build_run_config,
    parse_overrides,
)


def test_dotted_overrides_are_parsed_as_yaml_scalars():
    o = parse_overrides(
        [
            "train.lr=3e-4",
            "model.qk_norm=true",
            "task.eval_scales=[1, 3]",
            "model.pos_encoding=rope",
        ]
    )
    assert o == {
        "train.lr": 3e-4,
        "model.qk_norm": True,
        "task.eval_scales": [1, 3],
        "model.pos_encoding": "rope",
    }


def test_file_then_variant_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model:\n  d_model: 64\n  n_heads: 8\ntrain:\n  lr: 0.01\n")
    cfg = build_run_config(f, ["variant=llama", "train.lr=0.02"])
    assert cfg.variant == "llama"
    assert cfg.model.pos_encoding == "rope" and cfg.model.ffn == "swiglu"
    assert cfg.model.d_model == 64  # the file's explicit value survives the preset
    assert cfg.train.lr == 0.02


def test_variant_given_as_a_path(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("norm_placement: post\npos_encoding: alibi\n")
    cfg = build_run_config(overrides={"variant": str(p)})
    assert (cfg.model.norm_placement, cfg.model.pos_encoding) == ("post", "alibi")


def test_axes_come_from_the_literal_fields():
    # a new value of a Literal is a new axis value, with no list to update here
    from typing import get_args

    from bench.config.model import NormPlacement, PosEncoding

    a = axes()
    assert a["pos_encoding"] == get_args(PosEncoding)
    assert {"sinusoidal", "learned", "rope", "alibi", "t5", "nope"} <= set(a["pos_encoding"])
    assert a["norm_placement"] == get_args(NormPlacement)
    assert a["qk_norm"] == (False, True)


def test_flat_config_uses_section_prefixes():
    flat = RunConfig().flat()
    assert flat["model.pos_encoding"] == "learned"
    assert "train.lr" in flat and "task.name" in flat


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"model.d_model": 30, "model.n_heads": 4},
            "model.d_model=30 must be divisible by model.n_heads=4",
        ),
        (
            {"model.n_heads": 4, "model.n_kv_heads": 3},
            "model.n_heads=4 must be divisible by model.n_kv_heads=3",
        ),
        (
            {"model.n_heads": 8, "model.n_kv_heads": "n_heads/3"},
            "model.n_kv_heads='n_heads/3': model.n_heads=8 is not divisible by 3",
        ),
        (
            {"model.n_kv_heads": "half"},
            "model.n_kv_heads: 'half': allowed: an integer >= 1, 'n_heads' or 'n_heads/K'",
        ),
        ({"model.pos_encoding": "xpos"}, "model.pos_encoding='xpos': allowed: 'sinusoidal'"),
        ({"model.norm_placement": "middle"}, "model.norm_placement='middle'"),
        ({"model.d_model": -8}, "model.d_model=-8: Input should be greater than or equal to 1"),
        ({"model.colour": "red"}, "unknown key 'model.colour'; allowed: arch,"),
        ({"variant": "nosuch"}, "variant='nosuch': no such preset; allowed:"),
        ({"train.lr": "fast"}, "train.lr='fast'"),
    ],
)
def test_bad_configuration_is_one_line_naming_field_value_and_allowed(overrides, expected):
    with pytest.raises(ConfigError) as e:
        build_run_config(overrides=overrides)
    msg = str(e.value)
    assert expected in msg
    assert "\n" not in msg


def test_unknown_key_in_a_yaml_file_names_the_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  lr: 0.1\n  momentum: 0.9\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'train.momentum'"):
        build_run_config(f)


def test_yaml_is_safe_loaded(tmp_path):
    f = tmp_path / "evil.yaml"
    f.write_text("train: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        build_run_config(f)


def test_gqa_and_sizes_derive_from_the_config():
    m = ModelConfig(d_model=64, n_heads=8, n_kv_heads=2, ffn="swiglu")
    assert (m.head_dim, m.kv_heads, m.ffn_dim) == (8, 2, 170)
    assert ModelConfig(norm_placement="deepnorm").init_scheme == "deepnorm"


def test_kv_heads_as_a_fraction_of_the_query_heads_follow_the_width():
    """'n_heads/K' keeps GQA's proportion on a width ladder; 'n_heads' is MHA at any width;
    the value is kept as written (a sweep's cell is named by it)."""
    for d, h in ((64, 8), (128, 16)):
        kv = [ModelConfig(d_model=d, n_heads=h, n_kv_heads=v).kv_heads
              for v in ("n_heads", "n_heads/4", 1, None)]  # fmt: skip
        assert kv == [h, h // 4, 1, h]
    cfg = build_run_config(overrides={"model.n_heads": 8, "model.n_kv_heads": "n_heads/4"})
    assert cfg.flat()["model.n_kv_heads"] == "n_heads/4" and cfg.model.kv_heads == 2


def test_hessian_and_landscape_are_sections_and_a_bool_switches_them_on(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("diagnostics:\n  hessian: true\n  landscape: {enabled: true, resolution: 7}\n")
    cfg = build_run_config(path, ["diagnostics.hessian.top_k=5", "diagnostics.landscape=false"])
    assert (cfg.diagnostics.hessian.enabled, cfg.diagnostics.hessian.top_k) == (True, 5)
    assert (cfg.diagnostics.landscape.enabled, cfg.diagnostics.landscape.resolution) == (False, 7)
    assert cfg.flat()["diagnostics.hessian.top_k"] == 5


def test_a_config_written_with_the_flat_diagnostics_keys_still_loads(tmp_path):
    old = {"hessian": True, "hessian_steps": [0.0, 1.0], "hessian_iters": 4,
           "landscape_resolution": 9, "landscape_every": 3}  # fmt: skip
    loaded = RunConfig.model_validate({"diagnostics": old}).diagnostics
    assert loaded.hessian == HessianConfig(enabled=True, steps=[0.0, 1.0], iters=4)
    assert loaded.landscape == LandscapeConfig(resolution=9, every=3)
    path = tmp_path / "config.yaml"
    path.write_text("diagnostics:\n  hessian_top_k: 2\n")
    assert build_run_config(path, ["diagnostics.hessian=true"]).diagnostics.hessian.top_k == 2


def test_an_unknown_key_inside_a_diagnostics_section_names_the_section_fields():
    with pytest.raises(ConfigError, match=r"diagnostics\.hessian\.topk.*allowed: .*top_k"):
        build_run_config(overrides=["diagnostics.hessian.topk=2"])

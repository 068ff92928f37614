"""Every axis value maps to exactly one registered class; presets build; model stays plain PyTorch."""

from __future__ import annotations

import pytest
import torch

from bench.config import axes, build_run_config, presets
from bench.model import ARCHS, build_model
from bench.model.block import PLACEMENTS
from bench.model.embedding import EMBED_SCALES
from bench.model.feedforward import FEEDFORWARDS
from bench.model.init import INITS
from bench.model.norms import NORMS
from bench.model.positional import POSITIONAL, ROPE_SCALINGS

REGISTRIES = {
    "arch": ARCHS,
    "norm_placement": PLACEMENTS,
    "norm_type": NORMS,
    "pos_encoding": POSITIONAL,
    "ffn": FEEDFORWARDS,
    "rope_scaling": ROPE_SCALINGS,
}


@pytest.mark.parametrize("axis", sorted(REGISTRIES))
def test_registry_keys_equal_the_config_literal(axis):
    assert set(REGISTRIES[axis]) == set(axes()[axis])


def test_init_schemes_cover_every_init_value_but_auto():
    assert set(INITS) == set(axes()["init"]) - {"auto"}


def test_embedding_scales_cover_every_embed_scale_value_but_auto():
    assert set(EMBED_SCALES) == set(axes()["embed_scale"]) - {"auto"}


EXPECTED_PRESETS = {
    "vaswani2017",
    "gpt2",
    "llama",
    "alibi",
    "nope",
    "t5-bias",
    "deepnorm",
    "sandwich",
    "dyt",
    "palm",
    "peri-ln",
}


def test_required_presets_exist_with_descriptions():
    assert set(presets.names()) >= EXPECTED_PRESETS
    for name in presets.names():
        assert presets.description(name), f"{name} has no description"


@pytest.mark.parametrize("name", presets.names())
def test_every_preset_loads_builds_and_runs(name):
    torch.manual_seed(0)
    cfg = build_run_config(
        overrides={"variant": name, "model.d_model": 32, "model.max_len": 16}
    ).model
    model = build_model(cfg)
    x = torch.randint(0, cfg.vocab_size, (2, 6))
    logits = model(x) if cfg.arch == "decoder" else model(x, x)
    assert logits.shape == (2, 6, cfg.vocab_size)
    assert torch.isfinite(logits).all()


def test_presets_set_what_their_papers_prescribe():
    llama = build_run_config(overrides={"variant": "llama"}).model
    assert (llama.norm_type, llama.pos_encoding, llama.ffn, llama.kv_heads, llama.n_heads) == (
        "rmsnorm",
        "rope",
        "swiglu",
        2,
        4,
    )
    assert not llama.bias
    vaswani = build_run_config(overrides={"variant": "vaswani2017"}).model
    assert (vaswani.arch, vaswani.norm_placement, vaswani.pos_encoding, vaswani.ffn) == (
        "encoder_decoder",
        "post",
        "sinusoidal",
        "relu",
    )
    assert build_run_config(overrides={"variant": "deepnorm"}).model.init_scheme == "deepnorm"
    dyt = build_run_config(overrides={"variant": "dyt"}).model
    assert (dyt.norm_type, dyt.norm_placement, dyt.dyt_alpha, dyt.bias) == (
        "dyt",
        "pre",
        0.5,
        False,
    )
    palm = build_run_config(overrides={"variant": "palm"}).model
    assert (palm.block, palm.ffn, palm.kv_heads, palm.bias) == ("parallel", "swiglu", 1, False)
    peri = build_run_config(overrides={"variant": "peri-ln"}).model
    assert (peri.norm_placement, peri.embed_scale) == ("peri", "norm")


PRESET_INIT = {  # what each source trains with (comments in variants/*.yaml)
    "vaswani2017": {"init": "xavier", "embed_scale": "sqrt_d"},
    "post-ln": {"init": "xavier", "embed_scale": "sqrt_d"},
    "alibi": {"init": "xavier", "embed_scale": "sqrt_d"},
    "deepnorm": {"init": "deepnorm", "embed_scale": "sqrt_d"},
    "gpt2": {"init": "gpt2", "embed_scale": "none"},
    "llama": {"init": "gpt2", "embed_scale": "none"},
    "sandwich": {"init": "gpt2", "embed_scale": "none"},
    "t5-bias": {"init": "torch", "embed_scale": "none"},
    "dyt": {"init": "gpt2", "embed_scale": "sqrt_d"},
    "palm": {"init": "torch", "embed_scale": "none"},
    "peri-ln": {"init": "gpt2", "embed_scale": "norm"},
}


@pytest.mark.parametrize("name", sorted(PRESET_INIT))
def test_presets_set_the_init_and_embedding_scale_of_their_source(name):
    model = build_run_config(overrides={"variant": name}).model
    assert (model.init, model.embed_scale) == tuple(PRESET_INIT[name].values())
    assert model.resolved() == PRESET_INIT[name]


def test_every_preset_states_its_init_and_embedding_scale():
    for name in presets.names():
        assert {"init", "embed_scale"} <= set(presets.load(name)), name

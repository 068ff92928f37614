"""Attention maps: recorded at init and at the end of a real run, drawn as a grid of
heatmaps, redrawn by ``bench attention``, off for large models, and logged to W&B."""

from __future__ import annotations

import numpy as np
import pytest

from bench.cli import main
from bench.diagnostics.attention.plot import FILE, AttentionMaps, draw_grid
from bench.training.run import train_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from bench.config import build_run_config
    from tests.conftest import TINY

    out = tmp_path_factory.mktemp("maps")
    cfg = build_run_config(
        overrides={
            **TINY,
            "task.name": "reverse",
            "train.max_steps": 6,
            "tracking.mode": "offline",
            "tracking.out_dir": str(out),
            "diagnostics.figures": True,  # the maps' figures go to W&B
            "diagnostics.gradients": False,
            "diagnostics.attention_maps_examples": 3,
        }
    )
    return train_run(cfg)


def test_maps_are_recorded_at_init_and_at_the_end_for_every_layer_and_head(run):
    d = run.run_dir / "diagnostics"
    maps = AttentionMaps.load(d / FILE)
    assert maps.steps == [0, 6]
    assert maps.layers == ["layer_0", "layer_1"]
    assert maps.examples == 3
    assert maps.maps[0].shape[:3] == (2, 3, 2)  # steps x examples x heads
    for _, m in maps.at(1, 0):
        q = m.shape[1]
        assert m.shape == (2, q, q)
        # each real query's row is a distribution over the keys it may see (causal)
        np.testing.assert_allclose(m.sum(-1), 1.0, atol=2e-3)
        assert np.all(m[:, np.triu_indices(q, 1)[0], np.triu_indices(q, 1)[1]] == 0)
    # init and end differ: six updates moved the attention
    assert not np.allclose(maps.maps[1][0], maps.maps[1][1])
    assert (d / "attention_init.png").stat().st_size > 0
    assert (d / "attention_end.png").stat().st_size > 0


def test_the_grid_has_one_heatmap_per_layer_and_head():
    maps = AttentionMaps(
        steps=[0],
        layers=["enc_layer_0", "dec_layer_0", "dec_layer_0/cross"],
        maps=[
            np.full((1, 1, 3, 5, 5), 0.2),
            np.full((1, 1, 3, 4, 4), 0.25),
            np.full((1, 1, 3, 4, 5), 0.2),
        ],
        queries=[np.array([5]), np.array([4]), np.array([4])],
        keys=[np.array([5]), np.array([4]), np.array([5])],
        query_tokens=[np.arange(5)[None], np.arange(4)[None], np.arange(4)[None]],
        key_tokens=[np.arange(5)[None], np.arange(4)[None], np.arange(5)[None]],
    )
    fig = draw_grid(maps, 0, 0)
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 9  # 3 layers x 3 heads
    assert heatmaps[-1].get_title() == "dec_layer_0/cross head 2"
    assert heatmaps[-1].images[0].get_array().shape == (4, 5)  # queries x keys
    # an encoder layer's queries are the source tokens
    assert [t.get_text() for t in heatmaps[0].get_yticklabels()] == ["0", "1", "2", "3", "4"]


def test_bench_attention_draws_a_recorded_step_and_example(run, capsys):
    assert main(["attention", str(run.run_dir), "--step", "0", "--example", "2"]) == 0
    path = run.run_dir / "diagnostics" / "attention_step0_ex2.png"
    assert capsys.readouterr().out.strip() == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_maps_go_to_wandb_as_images(run):
    from wandb_runs import find_run_files, read_run

    (path,) = find_run_files(run.run_dir / "wandb")
    logged = read_run(path)
    keys = {k for row in logged.history for k in row}
    assert {"attention/init", "attention/end"} <= keys


def test_large_models_record_no_maps(tiny):
    result = train_run(
        tiny(**{"train.max_steps": 2, "diagnostics.attention_maps_max_params": 1000})
    )
    assert result.status == "completed"
    assert not (result.run_dir / "diagnostics" / FILE).exists()

"""Loss landscape: directions, vmap grid evaluation, summaries, figures, trajectory."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from bench.config import ConfigError, LandscapeConfig, ModelConfig, RunConfig
from bench.diagnostics.landscape import (
    LandscapeCallback,
    Plane,
    Surface,
    basin_width,
    benchmark_grid,
    center_loss,
    choose_chunk_size,
    evaluate_plane,
    interp_barrier,
    interpolate,
    landscape_report,
    load_trajectory,
    pca_directions,
    project,
    random_directions,
    sharpness,
)
from bench.diagnostics.parameters import as_flat, flatten_params, trainable_params
from bench.training.module import BenchModule

PNG = b"\x89PNG\r\n\x1a\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def loss_fn(m: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    return m.compute_loss(b)


def small_module(**model: object) -> BenchModule:
    """The project's transformer, small: d_model=16, 2 layers, T=8."""
    torch.manual_seed(0)
    base = dict(d_model=16, n_layers=2, n_heads=2, vocab_size=11, max_len=8, d_ff=32)
    return BenchModule(RunConfig(model=ModelConfig(**(base | model))))


def lm_batch(n: int = 4, t: int = 8, vocab: int = 11, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n, t), generator=g)
    return {"input_ids": x, "labels": x.roll(1, 1)}


def seq2seq_batch(n: int = 3, s: int = 5, t: int = 4, vocab: int = 11) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    src = torch.randint(0, vocab, (n, s), generator=g)
    tgt = torch.randint(0, vocab, (n, t + 1), generator=g)
    return {"src": src, "tgt_in": tgt[:, :-1], "labels": tgt[:, 1:]}


def train(module: BenchModule, batch: dict, steps: int, every: int = 1) -> list[torch.Tensor]:
    """Plain SGD steps; returns flat snapshots (the first is the start)."""
    opt = torch.optim.SGD(module.parameters(), lr=0.5)
    snaps = [flatten_params(trainable_params(module)).clone()]
    for i in range(steps):
        opt.zero_grad()
        module.compute_loss(batch).backward()
        opt.step()
        if (i + 1) % every == 0:
            snaps.append(flatten_params(trainable_params(module)).clone())
    return snaps


# ----------------------------------------------------------------------------- directions


def test_random_directions_are_filter_normalised_with_zero_1d_parts() -> None:
    params = trainable_params(small_module())
    d1, d2 = random_directions(params, seed=0)
    assert set(d1) == set(params) == set(d2)
    for name, w in params.items():
        for d in (d1,):
            if w.dim() <= 1:
                assert torch.count_nonzero(d[name]) == 0, name
            else:
                rows = d[name].reshape(w.shape[0], -1).norm(dim=1)
                torch.testing.assert_close(rows, w.reshape(w.shape[0], -1).norm(dim=1))
    # d2 keeps zeros where 1-D parameters are, and is orthogonal to d1.
    f1, f2 = flatten_params(d1), flatten_params(d2)
    assert abs(float(f1 @ f2)) <= 1e-5 * float(f1.norm() * f2.norm())
    assert all(torch.count_nonzero(d2[n]) == 0 for n, w in params.items() if w.dim() <= 1)


def test_random_directions_are_reproducible_from_the_seed() -> None:
    params = trainable_params(small_module())
    a, b, c = (flatten_params(random_directions(params, s)[0]) for s in (3, 3, 4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_pca_directions_recover_the_plane_of_a_planar_trajectory() -> None:
    g = torch.Generator().manual_seed(0)
    n = 50
    u, v = torch.linalg.qr(torch.randn(n, 2, generator=g, dtype=torch.float64))[0].T
    final = torch.randn(n, generator=g, dtype=torch.float64)
    ab = torch.tensor([[3.0, 1.0], [2.0, -0.5], [1.0, 0.4], [0.5, -0.1]], dtype=torch.float64)
    traj = [final + a * u + b * v for a, b in ab] + [final]
    d1, d2, explained = pca_directions(traj, final)
    basis = torch.stack([u, v])
    # each principal direction lies in span(u, v) and has unit length
    for d in (d1, d2):
        assert float((basis @ d).norm()) == pytest.approx(1.0, abs=1e-9)
    assert abs(float(d1 @ d2)) < 1e-9
    assert sum(explained) == pytest.approx(1.0) and explained[0] >= explained[1] > 0
    coords = project(traj, final, d1, d2)
    # projection is exact for a planar trajectory: distances to final are kept
    np.testing.assert_allclose(np.hypot(coords[:, 0], coords[:, 1])[:-1], ab.norm(dim=1), rtol=1e-9)


def test_pca_directions_keep_the_dict_form_and_need_two_snapshots() -> None:
    params = trainable_params(small_module())
    traj = [{k: p + 0.1 * i for k, p in params.items()} for i in range(3)]
    d1, _, _ = pca_directions(traj, params)
    assert set(d1) == set(params)
    with pytest.raises(ConfigError, match="at least 2"):
        pca_directions(traj[:1], params)


# ----------------------------------------------------------------------------- grid evaluation


def test_vmap_grid_equals_the_per_point_loop_to_1e6_across_chunks() -> None:
    module = small_module()
    params = trainable_params(module)
    d1, d2 = random_directions(params, seed=1)
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-0.5, 0.5, 3)
    batches = [lm_batch(seed=0), lm_batch(seed=1)]
    loop = evaluate_plane(
        Surface(module, loss_fn, batches), Plane(params, d1, d2), xs, ys, batched=False
    )
    assert loop.shape == (3, 5)
    for chunk in (None, 4, 1, 7):
        z = evaluate_plane(
            Surface(module, loss_fn, batches), Plane(params, d1, d2), xs, ys, chunk_size=chunk
        )
        np.testing.assert_allclose(z, loop, atol=1e-6, rtol=0)
    assert np.ptp(loop) > 1e-3  # the plane is not flat, so the comparison means something


def test_grid_rows_follow_ys_and_columns_follow_xs() -> None:
    module = small_module()
    params = trainable_params(module)
    d1, d2 = random_directions(params, seed=0)
    xs, ys = np.array([-1.0, 0.0, 0.5]), np.array([0.0, 0.8])
    batch = lm_batch()
    z = evaluate_plane(Surface(module, loss_fn, batch), Plane(params, d1, d2), xs, ys)
    moved = {k: params[k] + 0.5 * d1[k] + 0.8 * d2[k] for k in params}
    with torch.no_grad():
        module.load_state_dict(moved, strict=False)
        module.eval()
        direct = float(module.compute_loss(batch))
    assert z[1, 2] == pytest.approx(direct, abs=1e-5)


@pytest.mark.parametrize(
    "variant",
    [
        {"pos_encoding": "rope"},
        {"pos_encoding": "alibi"},
        {"pos_encoding": "t5"},
        {"norm_placement": "post", "norm_type": "rmsnorm"},
        {"ffn": "swiglu", "n_kv_heads": 1},
    ],
)
def test_vmap_grid_matches_the_loop_for_model_variants(variant: dict) -> None:
    module = small_module(**variant)
    params = trainable_params(module)
    d1, d2 = random_directions(params, seed=0)
    xs = np.linspace(-1, 1, 3)
    z = evaluate_plane(Surface(module, loss_fn, lm_batch()), Plane(params, d1, d2), xs, xs)
    loop = evaluate_plane(
        Surface(module, loss_fn, lm_batch()), Plane(params, d1, d2), xs, xs, batched=False
    )
    np.testing.assert_allclose(z, loop, atol=1e-6, rtol=0)


def test_vmap_grid_matches_the_loop_for_encoder_decoder() -> None:
    module = small_module(arch="encoder_decoder", n_layers=1)
    params = trainable_params(module)
    d1, d2 = random_directions(params, seed=0)
    xs = np.linspace(-1, 1, 3)
    z = evaluate_plane(Surface(module, loss_fn, seq2seq_batch()), Plane(params, d1, d2), xs, xs)
    loop = evaluate_plane(
        Surface(module, loss_fn, seq2seq_batch()), Plane(params, d1, d2), xs, xs, batched=False
    )
    np.testing.assert_allclose(z, loop, atol=1e-6, rtol=0)


def test_grid_that_cannot_fit_the_memory_budget_is_a_one_line_config_error() -> None:
    module = small_module()
    params = trainable_params(module)
    d1, d2 = random_directions(params, seed=0)
    xs = np.linspace(-1, 1, 3)
    with pytest.raises(ConfigError) as err:
        evaluate_plane(
            Surface(module, loss_fn, lm_batch()), Plane(params, d1, d2), xs, xs, memory_budget=1000
        )
    assert "\n" not in str(err.value) and "memory budget" in str(err.value)
    with pytest.raises(ConfigError, match=r"chunk_size <= 2"):
        choose_chunk_size(per_point=100, budget=250, n_points=9, requested=5)
    assert choose_chunk_size(per_point=100, budget=10_000, n_points=9) == 9
    assert choose_chunk_size(per_point=100, budget=450, n_points=9) == 4


def test_interpolation_ends_at_the_losses_of_its_endpoints() -> None:
    module = small_module()
    batch = lm_batch()
    snaps = train(module, batch, steps=5)
    alphas, losses = interpolate(Surface(module, loss_fn, batch), snaps[0], snaps[-1], n_points=6)
    np.testing.assert_allclose(alphas, np.linspace(0, 1, 6))
    with torch.no_grad():
        module.eval()
        final = float(module.compute_loss(batch))
    assert losses[-1] == pytest.approx(final, abs=1e-5)
    assert losses[0] > losses[-1]  # training lowered the loss


# ----------------------------------------------------------------------------- summary numbers


def test_sharpness_is_the_largest_rise_within_the_radius() -> None:
    xs = np.linspace(-1, 1, 21)
    gx, gy = np.meshgrid(xs, xs)
    z = 1.0 + gx**2 + 2 * gy**2
    assert center_loss(xs, xs, z) == pytest.approx(1.0)
    assert sharpness(xs, xs, z, radius=0.5) == pytest.approx(2 * 0.5**2)  # at (0, +-0.5)


def test_basin_width_of_a_round_bowl_is_its_level_set_radius() -> None:
    xs = np.linspace(-1, 1, 41)
    gx, gy = np.meshgrid(xs, xs)
    width, censored = basin_width(xs, xs, gx**2 + gy**2, threshold=0.25)
    assert width == pytest.approx(0.5, abs=0.01) and censored == 0.0
    flat_width, flat_censored = basin_width(xs, xs, np.zeros_like(gx), threshold=0.1, n_rays=4)
    assert flat_censored == 1.0 and flat_width == pytest.approx(1.0)  # rays end at the edge


def test_interp_barrier_measures_the_bump_above_the_straight_line() -> None:
    a = np.linspace(0, 1, 11)
    assert interp_barrier(a, 2 - a + 0.3 * np.sin(np.pi * a)) == pytest.approx(0.3)
    assert interp_barrier(a, 2 - a - np.sin(np.pi * a)) == 0.0


# ----------------------------------------------------------------------------- report, trajectory


def test_landscape_report_writes_grids_figures_and_returns_the_summary(tmp_path) -> None:
    module = small_module()
    batch = lm_batch()
    snaps = train(module, batch, steps=8, every=2)
    out = landscape_report(
        module,
        loss_fn,
        [batch],
        snaps[0],
        trainable_params(module),
        np.stack(snaps),
        tmp_path,
        LandscapeConfig(resolution=6),
        seed=0,
    )
    expected = {
        "landscape/sharpness",
        "landscape/basin_width",
        "landscape/interp_barrier",
        "landscape/center_loss",
        "landscape/pca_explained_1",
        "landscape/pca_explained_2",
    }
    assert expected <= set(out) and all(np.isfinite(v) for v in out.values())
    random = np.load(tmp_path / "landscape_random.npz")
    assert random["losses"].shape == (7, 7)  # resolution made odd: the centre is a node
    assert random["losses"][3, 3] == pytest.approx(out["landscape/center_loss"])
    pca = np.load(tmp_path / "landscape_pca.npz")
    assert pca["path"].shape == (len(snaps), 2)
    assert out["landscape/pca_explained_1"] >= out["landscape/pca_explained_2"]
    for name in ("random_contour", "random_surface", "pca_contour", "pca_surface", "interp"):
        assert (tmp_path / f"landscape_{name}.png").read_bytes()[:8] == PNG
    assert json.loads((tmp_path / "landscape_summary.json").read_text()) == out
    assert not list(tmp_path.glob(".*tmp"))


def test_landscape_callback_keeps_a_thinned_trajectory_from_init_to_final(tmp_path) -> None:
    module = small_module()
    init = flatten_params(trainable_params(module)).clone()
    rows = [{k: v[i] for k, v in lm_batch(n=4).items()} for i in range(4)]
    cb = LandscapeCallback(tmp_path, every=1, max_snapshots=4)
    trainer = L.Trainer(
        max_steps=9,
        accelerator="cpu",
        logger=False,
        callbacks=[cb],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=DataLoader(rows, batch_size=1))
    traj = load_trajectory(tmp_path / "diagnostics" / "trajectory.npz")
    assert traj.steps[0] == 0 and traj.steps[-1] == 9
    assert len(traj.steps) <= 4 + 1 and list(traj.steps) == sorted(traj.steps)
    assert np.all(np.diff(traj.steps[:-1]) == traj.steps[1] - traj.steps[0])  # evenly spaced
    assert traj.params.dtype == np.float32 and traj.params.shape[1] == init.numel()
    np.testing.assert_array_equal(traj.params[0], init.numpy())
    final = as_flat(trainable_params(module), trainable_params(module))
    np.testing.assert_array_equal(traj.params[-1], final.numpy())
    assert traj.names == list(trainable_params(module))


def test_benchmark_grid_compares_vmap_and_loop_on_the_same_grid() -> None:
    result = benchmark_grid(small_module(), loss_fn, lm_batch(), resolution=3, repeats=1)
    assert result["points"] == 9 and result["max_abs_diff"] <= 1e-5
    assert result["speedup"] == pytest.approx(result["loop_s"] / result["vmap_s"])

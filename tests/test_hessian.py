"""Hessian diagnostics: products, eigenvalues, trace, density and the callback."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend
from torch.utils.data import DataLoader

from bench.config import ConfigError, DiagnosticsConfig, HessianConfig
from bench.diagnostics.context import functional_context, sdpa_backends
from bench.diagnostics.hessian.callback import HessianCallback
from bench.diagnostics.hessian.plan import check_precision, resolve_steps
from bench.diagnostics.hessian.spectrum import (
    hessian_analysis,
    hessian_summary,
    hutchinson_trace,
    hvp,
    spectral_density,
    top_eigenvalues,
)
from bench.diagnostics.loss import loss_at
from bench.diagnostics.parameters import flatten_params, trainable_params, unflatten_params
from bench.diagnostics.run_figures import draw_run_figures


class TinyAttention(nn.Module):
    """Embedding, one causal SDPA self-attention with a residual, layer norm, linear head."""

    def __init__(self, vocab: int = 7, d: int = 4, heads: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.emb = nn.Embedding(vocab, d)
        self.qkv = nn.Linear(d, 3 * d)
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape
        h = self.emb(x)
        q, k, v = self.qkv(h).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        h = h + self.drop(a.transpose(1, 2).reshape(b, t, -1))
        return self.head(self.norm(h))

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self(batch["x"])
        return F.cross_entropy(logits.flatten(0, 1), batch["y"].flatten())


def loss_fn(m: nn.Module, b: dict[str, torch.Tensor]) -> torch.Tensor:
    return m.compute_loss(b)


def make_batch(n: int = 6, t: int = 5, vocab: int = 7, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, vocab, (n, t), generator=g)
    return {"x": x, "y": torch.roll(x, 1, dims=1)}  # predict the previous token


def trained_tiny(steps: int = 30, dtype: torch.dtype = torch.float64) -> tuple[nn.Module, dict]:
    """A tiny model a few Adam steps in, so the Hessian has curvature of both signs."""
    torch.manual_seed(0)
    model = TinyAttention().to(dtype)
    batch = make_batch()
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        opt.zero_grad()
        model.compute_loss(batch).backward()
        opt.step()
    return model, batch


def exact_hessian(model: nn.Module, batch: dict) -> torch.Tensor:
    params = trainable_params(model)
    f = loss_at(model, loss_fn)
    with functional_context(model, grad=True):
        return torch.autograd.functional.hessian(
            lambda flat: f(unflatten_params(flat, params), batch), flatten_params(params)
        )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, dict, torch.Tensor, np.ndarray]:
    model, batch = trained_tiny()
    h = exact_hessian(model, batch)
    return model, batch, h, np.linalg.eigvalsh(h.numpy())


# ----------------------------------------------------------------------------- SDPA kernels


def test_sdpa_backend_is_math_for_cuda_and_cpu_devices() -> None:
    assert sdpa_backends(torch.device("cuda", 0)) == [SDPBackend.MATH]
    assert sdpa_backends(torch.device("cpu")) == [SDPBackend.MATH]


def test_functional_context_disables_flash_and_efficient_kernels_and_restores_them() -> None:
    model = TinyAttention()
    before = (
        torch.backends.cuda.flash_sdp_enabled(),
        torch.backends.cuda.mem_efficient_sdp_enabled(),
    )
    with functional_context(model, grad=True):
        assert torch.backends.cuda.math_sdp_enabled()
        assert not torch.backends.cuda.flash_sdp_enabled()
        assert not torch.backends.cuda.mem_efficient_sdp_enabled()
        assert not torch.backends.cuda.cudnn_sdp_enabled()
    after = (
        torch.backends.cuda.flash_sdp_enabled(),
        torch.backends.cuda.mem_efficient_sdp_enabled(),
    )
    assert after == before


def test_functional_context_turns_dropout_off_and_restores_train_mode() -> None:
    model = TinyAttention(dropout=0.5).train()
    with functional_context(model, grad=False):
        assert not model.training and not model.drop.training
    assert model.training and model.drop.training


# ----------------------------------------------------------------------------- products


def test_hvp_equals_exact_hessian_times_vector_for_flat_and_dict_vectors(tiny) -> None:
    model, batch, h, _ = tiny
    torch.manual_seed(1)
    v = torch.randn(h.shape[0], dtype=h.dtype)
    assert torch.allclose(hvp(model, loss_fn, batch, v), h @ v, atol=1e-10)
    params = trainable_params(model)
    vd = unflatten_params(v, params)
    out = hvp(model, loss_fn, batch, vd)
    assert set(out) == set(params)
    assert torch.allclose(flatten_params(out), h @ v, atol=1e-10)


def test_hvp_is_plain_double_backward_on_the_real_transformer_to_the_last_bit() -> None:
    """What tools/hessian_benchmark.py times against: autograd.grad twice on the module."""
    from bench.config import ModelConfig, RunConfig
    from bench.training.module import BenchModule

    torch.manual_seed(0)
    cfg = ModelConfig(d_model=16, n_layers=2, n_heads=2, vocab_size=11, max_len=8, d_ff=32)
    module = BenchModule(RunConfig(model=cfg))
    x = torch.randint(0, 11, (4, 8), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": x, "labels": x.roll(1, 1)}
    params = [p for p in module.parameters() if p.requires_grad]
    v = torch.randn(sum(p.numel() for p in params), generator=torch.Generator().manual_seed(1))
    with functional_context(module, grad=True):
        grads = torch.autograd.grad(module.compute_loss(batch), params, create_graph=True)
        parts = [
            t.view_as(p) for t, p in zip(v.split([p.numel() for p in params]), params, strict=True)
        ]
        plain = torch.cat([h.reshape(-1) for h in torch.autograd.grad(grads, params, parts)])
    assert torch.equal(hvp(module, lambda m, b: m.compute_loss(b), batch, v), plain)


def test_hvp_at_other_params_differs_from_hvp_at_the_module_params(tiny) -> None:
    model, batch, h, _ = tiny
    v = torch.ones(h.shape[0], dtype=h.dtype)
    params = {n: p + 0.3 for n, p in trainable_params(model).items()}
    moved = hvp(model, loss_fn, batch, v, params=params)
    assert not torch.allclose(moved, h @ v, atol=1e-3)


def test_hvp_works_in_train_mode_with_dropout_and_gives_the_deterministic_eval_product() -> None:
    torch.manual_seed(0)
    model = TinyAttention(dropout=0.5).double().train()
    batch = make_batch()
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    a = hvp(model, loss_fn, batch, v)
    b = hvp(model, loss_fn, batch, v)
    assert torch.equal(a, b)
    assert torch.allclose(a, exact_hessian(model, batch) @ v, atol=1e-10)


# ----------------------------------------------------------------------------- eigenvalues, trace


def test_top_eigenvalues_match_exact_top_k_in_descending_order(tiny) -> None:
    model, batch, _, eig = tiny
    top = top_eigenvalues(model, loss_fn, batch, k=3, iters=20, tol=1e-6)
    exact = eig[::-1][:3]
    assert top == sorted(top, reverse=True)
    assert abs(top[0] - exact[0]) <= 0.01 * abs(exact[0])
    np.testing.assert_allclose(top, exact, rtol=1e-3)


def test_top_eigenvalues_in_float32_are_within_one_percent(tiny) -> None:
    model, batch = trained_tiny(dtype=torch.float32)
    _, _, _, eig = tiny
    top = top_eigenvalues(model, loss_fn, batch, k=2, iters=20)
    assert abs(top[0] - eig[-1]) <= 0.01 * abs(eig[-1])


def test_hutchinson_trace_is_within_five_percent_and_its_error_bar(tiny) -> None:
    model, batch, h, _ = tiny
    exact = float(torch.trace(h))
    mean, stderr = hutchinson_trace(model, loss_fn, batch, n_samples=400, seed=0)
    assert abs(mean - exact) <= 0.05 * abs(exact)
    assert abs(mean - exact) <= 4 * stderr
    assert stderr > 0


def test_summary_reports_extremes_trace_and_condition_proxy(tiny) -> None:
    model, batch, h, eig = tiny
    s = hessian_summary(model, loss_fn, batch, top_k=3, iters=40, n_trace_samples=400)
    assert set(s) >= {
        "hessian/lambda_max",
        "hessian/lambda_min",
        "hessian/trace",
        "hessian/condition",
        "hessian/top_k",
    }
    assert eig[0] < 0  # the tiny model's Hessian is indefinite, so lambda_min is tested
    assert abs(s["hessian/lambda_max"] - eig[-1]) <= 0.01 * abs(eig[-1])
    assert abs(s["hessian/lambda_min"] - eig[0]) <= 0.01 * abs(eig[0])
    assert s["hessian/top_k"][0] == s["hessian/lambda_max"]
    exact_trace = float(torch.trace(h))
    expected_condition = eig[-1] / (exact_trace / h.shape[0])
    assert s["hessian/condition"] == pytest.approx(expected_condition, rel=0.07)


# ----------------------------------------------------------------------------- density


def test_spectral_density_integrates_to_one_and_covers_the_spectrum(tiny) -> None:
    model, batch, _, eig = tiny
    grid, density = spectral_density(model, loss_fn, batch, n_lanczos=30, n_vectors=4)
    assert np.all(density >= 0)
    assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-3)
    assert grid[0] <= eig[0] and grid[-1] >= eig[-1]


def test_slq_quadrature_recovers_the_trace_from_the_spectrum(tiny) -> None:
    model, batch, h, _ = tiny
    res = hessian_analysis(model, loss_fn, batch, n_lanczos=40, n_vectors=20, seed=3)
    # E[sum_i w_i theta_i] = tr(H)/n for unit random start vectors.
    slq_trace = res.n_params * float((res.ritz_nodes * res.ritz_weights).sum(1).mean())
    exact = float(torch.trace(h))
    assert slq_trace == pytest.approx(exact, rel=0.15)


# ----------------------------------------------------------------------------- the callback


def test_resolve_steps_turns_fractions_into_sorted_unique_steps() -> None:
    assert resolve_steps([1.0, 0.0, 0.5, 0.5], 10) == [0, 5, 10]


@pytest.mark.parametrize("precision", ["16-mixed", "16-true", "bf16-true"])
def test_check_precision_refuses_half_precision_with_one_line(precision: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_precision(precision)
    assert "\n" not in str(err.value) and "32-true" in str(err.value)


def test_check_precision_accepts_full_precision_and_bf16_mixed() -> None:
    for p in ("32-true", "bf16-mixed", "64-true"):
        check_precision(p)


class TinyLit(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = TinyAttention()

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.compute_loss(batch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self.compute_loss(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class TinyData(L.LightningDataModule):
    def _loader(self, seed: int) -> DataLoader:
        b = make_batch(n=16, seed=seed)
        rows = [{"x": b["x"][i], "y": b["y"][i]} for i in range(16)]
        return DataLoader(rows, batch_size=4)

    def train_dataloader(self) -> DataLoader:
        return self._loader(0)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(1), self._loader(2)]


def _trainer(tmp_path: Path, cb: L.Callback, precision: str = "32-true", steps: int = 4):
    return L.Trainer(
        max_steps=steps,
        precision=precision,
        accelerator="cpu",
        logger=L.pytorch.loggers.CSVLogger(tmp_path, name="csv", version=0),
        callbacks=[cb],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )


def test_callback_measures_at_configured_steps_and_writes_npz_png_and_metrics(tmp_path) -> None:
    torch.manual_seed(0)
    cfg = DiagnosticsConfig(hessian=HessianConfig(enabled=True, steps=[0.0, 0.5, 1.0], top_k=2))
    cb = HessianCallback(tmp_path, cfg.hessian, n_trace_samples=8, n_lanczos=8, n_vectors=1)
    module = TinyLit()
    first = next(iter(TinyData().val_dataloader()[0]))
    expected0 = hessian_summary(
        module, loss_fn, first, top_k=2, iters=20, n_lanczos=8, n_vectors=1, n_trace_samples=8
    )
    _trainer(tmp_path, cb).fit(module, datamodule=TinyData())

    assert sorted(cb.results) == [0, 2, 4]
    # Step 0 is before any update, on the first batch of the first val loader.
    assert cb.results[0]["hessian/lambda_max"] == pytest.approx(
        expected0["hessian/lambda_max"], rel=1e-5
    )
    assert cb.results[4]["hessian/lambda_max"] != cb.results[0]["hessian/lambda_max"]
    for step in (0, 2, 4):
        npz = np.load(tmp_path / "diagnostics" / f"hessian_step{step}.npz")
        assert npz["top_k"].shape == (2,) and npz["density"].shape == npz["grid"].shape
        png = tmp_path / "diagnostics" / f"hessian_step{step}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "diagnostics").glob("*.tmp"))
    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("hessian/lambda_max")]
    assert [int(r["step"]) for r in rows] == [0, 2, 4]
    assert {
        "hessian/trace",
        "hessian/lambda_min",
        "hessian/condition",
        "hessian/top_2",
        "hessian/seconds",
    } <= set(rows[0])


def test_callback_without_density_measures_the_same_extremes_and_trace_and_draws_nothing(
    tmp_path,
) -> None:
    measured = {}
    for density in (True, False):
        torch.manual_seed(0)
        out = tmp_path / str(density)
        cfg = HessianConfig(enabled=True, steps=[0.0, 1.0], top_k=2, density=density)
        cb = HessianCallback(out, cfg, n_trace_samples=8, n_lanczos=8, n_vectors=2)
        _trainer(out, cb).fit(TinyLit(), datamodule=TinyData())
        measured[density] = cb.results
        npz = np.load(out / "diagnostics" / "hessian_step4.npz")
        assert (npz["density"].size > 0) is density
        assert (out / "diagnostics" / "hessian_step4.png").exists() is density
        # `bench figures` afterwards draws a density only where one was measured.
        drawn = draw_run_figures(out / "diagnostics", overwrite=True)
        assert any(p.name == "hessian_step4.png" for p in drawn) is density
    # The density's quadrature draws its own probes: the other estimates are unchanged.
    for step in (0, 4):
        for key in ("hessian/lambda_max", "hessian/lambda_min", "hessian/trace"):
            assert measured[False][step][key] == measured[True][step][key]


def test_callback_under_bf16_mixed_measures_float32_weights_without_autocast(tmp_path) -> None:
    torch.manual_seed(0)
    batch = make_batch(n=4)
    module = TinyLit()
    expected = hessian_summary(
        module, loss_fn, batch, top_k=1, n_trace_samples=4, n_lanczos=4, n_vectors=1
    )
    cb = HessianCallback(
        tmp_path,
        HessianConfig(steps=[0.0], top_k=1),
        batch=batch,
        n_trace_samples=4,
        n_lanczos=4,
        n_vectors=1,
    )
    _trainer(tmp_path, cb, precision="bf16-mixed", steps=1).fit(module, datamodule=TinyData())
    # bf16 autocast would change the loss surface at ~1e-2; float32 agrees to rounding.
    assert cb.results[0]["hessian/lambda_max"] == pytest.approx(
        expected["hessian/lambda_max"], rel=1e-5
    )


def test_callback_refuses_unsupported_precision_before_training(tmp_path) -> None:
    cb = HessianCallback(tmp_path, HessianConfig(steps=[0.0]))
    with pytest.raises(ConfigError, match="bf16-true"):
        _trainer(tmp_path, cb, precision="bf16-true", steps=1).fit(TinyLit(), datamodule=TinyData())
    assert not (tmp_path / "diagnostics").exists()


# ----------------------------------------------------------------------------- the real model


def _bench_module():
    """The project's LightningModule, once bench.training.module exists (written in parallel)."""
    if importlib.util.find_spec("bench.training.module") is None:
        return None
    import bench.training.module

    return getattr(bench.training.module, "BenchModule", None)


def tiny_bench_module(n_layers: int = 1, d_model: int = 8, vocab: int = 6) -> nn.Module:
    from bench.config import ModelConfig, RunConfig

    torch.manual_seed(0)
    model = ModelConfig(
        d_model=d_model, n_layers=n_layers, n_heads=2, vocab_size=vocab, max_len=8, d_ff=8
    )
    return _bench_module()(RunConfig(model=model))


def lm_batch(n: int = 3, t: int = 6, vocab: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (n, t), generator=g)
    return {"input_ids": x, "labels": x.roll(-1, 1)}


@pytest.mark.skipif(
    _bench_module() is None, reason="bench.training.module.BenchModule not written yet"
)
def test_real_transformer_lambda_max_and_trace_match_the_exact_hessian() -> None:
    module = tiny_bench_module()
    batch = lm_batch()
    h = exact_hessian(module, batch)
    eig = np.linalg.eigvalsh(h.double().numpy())
    top = top_eigenvalues(module, loss_fn, batch, k=2, iters=40)
    assert abs(top[0] - eig[-1]) <= 0.01 * abs(eig[-1])
    # At init |H|_F is ~100x tr(H), so Hutchinson needs thousands of samples for 5%;
    # here we check that its error bar is honest.
    mean, stderr = hutchinson_trace(module, loss_fn, batch, n_samples=200)
    assert abs(mean - float(torch.trace(h))) <= 3 * stderr


@pytest.mark.skipif(
    _bench_module() is None, reason="bench.training.module.BenchModule not written yet"
)
def test_callback_on_the_real_module_and_task_uses_the_first_validation_batch(tmp_path) -> None:
    from bench.config import ModelConfig, RunConfig, TaskConfig
    from bench.tasks import build_datamodule
    from bench.training.trainer import RunData

    task = TaskConfig(name="copy", seq_len=4, n_symbols=4, n_train=16, n_val=8, batch_size=4)
    dm = build_datamodule(task, "decoder")
    model = ModelConfig(d_model=8, n_layers=1, n_heads=2, vocab_size=dm.vocab_size, max_len=16)
    torch.manual_seed(0)
    module = _bench_module()(RunConfig(model=model, task=task))
    cb = HessianCallback(
        tmp_path,
        HessianConfig(steps=[0.0, 1.0], top_k=2),
        n_trace_samples=4,
        n_lanczos=6,
        n_vectors=1,
    )
    _trainer(tmp_path, cb, steps=2).fit(module, datamodule=RunData(dm))
    assert sorted(cb.results) == [0, 2]
    first_val = next(iter(dm.val_dataloader()[0]))
    assert all(torch.equal(cb.batch[k], first_val[k]) for k in first_val)
    for step in (0, 2):
        assert np.isfinite(cb.results[step]["hessian/lambda_max"])
        assert (tmp_path / "diagnostics" / f"hessian_step{step}.npz").exists()

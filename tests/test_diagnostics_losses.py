"""Diagnostics measure the loss training descends, and attention entropy ignores padding.

With ``train.label_smoothing > 0`` the noise scale's two gradients and the
Hessian are both of the smoothed loss (each records which loss it measured);
attention entropy averages over real query positions only.
"""

from __future__ import annotations

import math

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call
from torch.utils.data import DataLoader

from bench.config import DiagnosticsConfig, HessianConfig, build_run_config
from bench.diagnostics.attention.recorder import AttentionRecorder
from bench.diagnostics.context import functional_context
from bench.diagnostics.gradients.callback import GradientDiagnostics
from bench.diagnostics.hessian.callback import HessianCallback
from bench.diagnostics.hessian.spectrum import hvp
from bench.diagnostics.loss import training_loss
from bench.tasks import build_datamodule
from bench.tasks.vocab import collate, encode_encoder_decoder
from bench.training.module import IGNORE, BenchModule

SMOOTHING = 0.3


class _Frozen(BenchModule):
    """A BenchModule whose weights stay put (lr 0), so every step samples the same gradient law."""

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def _config(**overrides):
    return build_run_config(
        overrides={
            "model.d_model": 16,
            "model.n_layers": 1,
            "model.n_heads": 2,
            "task.seq_len": 6,
            "task.n_train": 256,
            "task.n_val": 16,
            "train.label_smoothing": SMOOTHING,
            "tracking.mode": "disabled",
            **overrides,
        }
    )


def _trainer(steps: int, *callbacks: L.Callback) -> L.Trainer:
    return L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=list(callbacks),
    )


def _task_pool(cfg):
    dm = build_datamodule(cfg.task, cfg.model.arch)
    dm.setup("fit")
    cfg.model.vocab_size = dm.vocab_size
    ds = dm.train_dataloader().dataset
    return [ds[i] for i in range(len(ds))]


def test_noise_scale_with_label_smoothing_matches_brute_force_on_the_smoothed_loss(tmp_path):
    cfg = _config()
    pool = _task_pool(cfg)  # copy task: every example has the same number of answer tokens
    L.seed_everything(0)
    module = _Frozen(cfg)

    # Brute force over the whole pool: per-example gradients of the smoothed loss,
    # B_simple = tr(Σ) / |G|² with G their mean and Σ their covariance.
    params = [p for p in module.parameters() if p.requires_grad]
    rows = []
    for ex in pool:
        g = torch.autograd.grad(_smoothed_loss(module, collate([ex])), params, allow_unused=True)
        rows.append(
            torch.cat(
                [
                    (x if x is not None else torch.zeros_like(p)).reshape(-1)
                    for x, p in zip(g, params, strict=True)
                ]
            ).double()
        )
    per_example = torch.stack(rows)
    mean = per_example.mean(0)
    brute = float(((per_example - mean) ** 2).sum(1).mean() / (mean @ mean))

    # The callback, on batches of 16 drawn with replacement from the same pool.
    steps, b = 300, 16
    gen = torch.Generator().manual_seed(1)
    draws = torch.randint(0, len(pool), (steps, b), generator=gen).tolist()
    batches = [collate([pool[j] for j in row]) for row in draws]
    cb = GradientDiagnostics(
        DiagnosticsConfig(gradients_every=1, gradients=False, attention_entropy=False),
        tmp_path,
        noise_ema=0.995,
    )
    _trainer(steps, cb).fit(module, train_dataloaders=DataLoader(batches, batch_size=None))

    # Over 4 draw seeds the estimate fell within 0-13% of brute force; mixing a
    # smoothed big-batch gradient with unsmoothed half-batch ones (the old bug)
    # gave a negative |G|² (nan) here and 3.6x on SCAN.
    assert cb.noise.value == pytest.approx(brute, rel=0.25)
    with np.load(tmp_path / "diagnostics" / "gradients.npz") as z:
        assert str(z["loss"]) == f"cross_entropy(label_smoothing={SMOOTHING:g})"


def _smoothed_loss(module: BenchModule, batch) -> torch.Tensor:
    """The smoothed cross-entropy written out by hand (not through BenchModule.compute_loss)."""
    logits = module(batch)
    return F.cross_entropy(
        logits.flatten(0, 1).float(),
        batch["labels"].flatten(),
        ignore_index=IGNORE,
        label_smoothing=SMOOTHING,
    )


def test_hessian_uses_the_smoothed_training_loss(tmp_path):
    cfg = _config()
    pool = _task_pool(cfg)
    L.seed_everything(0)
    module = _Frozen(cfg)
    batch = collate(pool[:8])

    # The callback, at step 0, on a given batch: its loss and product are of the smoothed loss.
    cb = HessianCallback(
        tmp_path,
        HessianConfig(steps=[0.0], top_k=1, iters=2),
        batch=batch,
        n_trace_samples=2,
        n_lanczos=2,
    )
    _trainer(1, cb).fit(module, train_dataloaders=DataLoader([batch], batch_size=None))
    with np.load(tmp_path / "diagnostics" / "hessian_step0.npz") as z:
        assert str(z["loss_fn"]) == f"cross_entropy(label_smoothing={SMOOTHING:g})"
        recorded_loss = float(z["loss"])
    with torch.no_grad(), functional_context(module, grad=False):
        assert recorded_loss == pytest.approx(float(_smoothed_loss(module, batch)), rel=1e-5)

    # H v of the callback's loss function against torch.func on the smoothed loss.
    names = [n for n, p in module.model.named_parameters() if p.requires_grad]
    theta = {n: p.detach() for n, p in module.model.named_parameters() if p.requires_grad}
    gen = torch.Generator().manual_seed(0)
    v = {n: torch.randn(p.shape, generator=gen) for n, p in theta.items()}

    def smoothed(params, smoothing):
        logits = functional_call(module.model, params, (batch["input_ids"],))
        return F.cross_entropy(
            logits.flatten(0, 1),
            batch["labels"].flatten(),
            ignore_index=IGNORE,
            label_smoothing=smoothing,
        )

    with functional_context(module, grad=True):
        want = torch.func.jvp(torch.func.grad(lambda p: smoothed(p, SMOOTHING)), (theta,), (v,))[1]
        plain = torch.func.jvp(torch.func.grad(lambda p: smoothed(p, 0.0)), (theta,), (v,))[1]
    got = hvp(module, cb.loss_fn, batch, {f"model.{n}": v[n] for n in names})
    got = {n.removeprefix("model."): t for n, t in got.items()}
    flat = lambda d: torch.cat([d[n].reshape(-1) for n in names])  # noqa: E731
    assert torch.allclose(flat(got), flat(want), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(flat(plain), flat(want), rtol=1e-2)  # the test can tell them apart
    assert cb.loss_fn is training_loss


def test_attention_entropy_on_a_padded_batch_averages_real_query_positions_only(tmp_path):
    cfg = _config(**{"model.arch": "encoder_decoder", "model.n_layers": 1})
    cfg.model.vocab_size = 16
    # Sources of lengths 5, 2, 3 and targets of lengths 1+4, 1+1, 1+2: plenty of padding.
    examples = [([4, 5, 6, 7, 8], [9, 10, 11, 12]), ([4, 5], [9]), ([6, 7, 8], [10, 11])]
    batch = collate([encode_encoder_decoder(p, a) for p, a in examples])
    src_len = [len(p) for p, _ in examples]
    tgt_len = [len(a) + 1 for _, a in examples]
    assert batch["src"].shape[1] == 5 and batch["tgt_in"].shape[1] == 5

    L.seed_everything(0)
    module = _Frozen(cfg)
    # By hand: probabilities of every layer at the initial weights, entropy per
    # (example, head, query), averaged over each example's real queries only.
    attn = {"enc_layer_0": module.model.encoder.blocks[0].attn}
    attn["dec_layer_0"] = module.model.decoder.blocks[0].attn
    attn["dec_layer_0/cross"] = module.model.decoder.blocks[0].cross_attn
    module.eval()
    with torch.no_grad(), AttentionRecorder(attn) as recorder:
        module(batch)
    expected, padded_too = {}, {}
    for name in attn:
        probs = recorder.records[name].probs.double()  # [B, H, T, S]
        lengths = src_len if name.startswith("enc") else tgt_len
        per_head = []
        for h in range(probs.shape[1]):
            values = [
                -sum(float(p) * math.log(float(p)) for p in probs[b, h, t] if p > 0)
                for b in range(probs.shape[0])
                for t in range(lengths[b])
            ]
            per_head.append(sum(values) / len(values))
        expected[name] = per_head
        ent = -torch.special.xlogy(probs, probs).sum(-1)
        padded_too[name] = ent.mean(dim=(0, 2)).tolist()
    module.train()

    cb = GradientDiagnostics(
        DiagnosticsConfig(gradients_every=1, gradients=False, noise_scale=False),
        tmp_path,
        entropy_examples=3,
    )
    _trainer(1, cb).fit(module, train_dataloaders=DataLoader([batch], batch_size=None))
    step, measured = cb.entropy[0]
    assert step == 0 and set(measured) == set(expected)
    for name, per_head in expected.items():
        assert measured[name].tolist() == pytest.approx(per_head, rel=1e-5), name
        # Padding changes the answer, so the test can tell the two apart.
        assert measured[name].tolist() != pytest.approx(padded_too[name], rel=1e-3), name

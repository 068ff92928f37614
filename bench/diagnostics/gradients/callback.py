"""Gradient conditioning: per-block gradient norms, update/weight ratios, the
gradient noise scale and attention entropy.

Plain functions work on any ``nn.Module`` (e.g. in a notebook);
:class:`GradientDiagnostics` runs them from Lightning hooks every
``DiagnosticsConfig.gradients_every`` optimizer steps, including step 0 (at
init, before any update), and does nothing else on the other steps.

The measurements live beside this callback, one concern a module:
:mod:`~bench.diagnostics.grouping` (which group a parameter belongs to, by module
type: ``block_{i}`` / ``enc_block_{i}`` / ``dec_block_{i}`` with sublayers
``attn``, ``cross_attn``, ``ffn``, ``norm``; ``embed``, ``final_norm``,
``lm_head``, ``other``), :mod:`~bench.diagnostics.gradients.stats` (norms, update
ratios), :mod:`~bench.diagnostics.gradients.noise_scale`,
:mod:`~bench.diagnostics.attention.stats` and
:mod:`~bench.diagnostics.gradients.figures`.

Logged keys (``step`` = optimizer updates done before the measured one, so the
values line up with ``train/loss`` of the same batch):

=====================================  ===========================================================
``cond/grad_norm/{group}``             L2 norm of the group's gradient (a block or a non-block group)
``cond/grad_norm/{block}/{sublayer}``  the same per sublayer (attn, cross_attn, ffn, norm)
``cond/grad_norm_total``               global gradient norm before clipping
``cond/grad_norm_total_clipped``       global norm after clipping, measured on the gradients
                                       the optimizer used
``cond/ffn_out_grad_norm/{block}``     Frobenius norm of the gradient of the block's FFN output
                                       matrix W2 (weight only; Xiong et al. 2020, Theorem 1: at
                                       step 0 it is the gradient at init of the batch-mean loss)
``cond/grad_norm_ratio_first_last``    first / last block of the decoder stack
``cond/enc_grad_norm_ratio_first_last``  first / last encoder block (encoder-decoder only)
``cond/update_ratio/{group}``          ``||θ_after - θ_before|| / ||θ_before||`` over the step
``cond/update_ratio_total``            the same over all parameters
``cond/noise_scale``                   B_simple = tr(Σ) / |G|² from EMAs, in sequences (examples)
``cond/noise_scale_grad_sq``           EMA of the unbiased |G|² estimate
``cond/noise_scale_trace``             EMA of the unbiased tr(Σ) estimate
``cond/attn_entropy/{layer}``          attention entropy (nats), mean over heads, queries and a
                                       fixed batch; layer = layer_{i}, enc_layer_{i}, dec_layer_{i},
                                       dec_layer_{i}/cross
``cond/attn_entropy_min/{layer}``      the lowest head's entropy (mean over queries and the batch)
``cond/attn_entropy_uniform/{layer}``  the entropy of uniform attention over the allowed keys (its
                                       maximum; constant for the fixed batch)
``cond/attn_logit_max/{layer}``        largest pre-softmax logit ``|q.k|/sqrt(d_head)`` over heads,
                                       real queries and the keys each may attend to
``cond/attn_first_mass/{layer}``       attention on the first key (Xiao et al. 2023's attention
                                       sink), mean over heads, the fixed batch and queries in the
                                       second half of the sequence; with ``model.sink_tokens``
                                       k > 0, the mass on the k sink keys together
``cond/attn_first_mass_ratio/{layer}`` that mass over uniform attention's there (mean of 1/keys,
                                       k/keys with sinks; causal: mean of 1/(t+1)); 1 = no
                                       preference for key 0 (the sinks)
``cond/output_logit_max``              largest output logit on the fixed batch's real positions
``cond/output_logit_mean``             mean output logit there
``cond/log_z_mean``                    mean log-partition ``logsumexp(logits)`` there
=====================================  ===========================================================

Files in ``<out_dir>/diagnostics/``: ``gradients.npz`` (per-step arrays, per-head
entropies, ``loss``: the loss the noise scale differentiates, the training
loss with its label smoothing, and ``noise_scale_dtype``: the dtype of those
gradients, the weights' own: ``float32`` in a ``bf16-mixed`` run too), ``grad_norm_depth.png`` (norm against depth at
init and at the end; only when norms were measured) and ``attn_entropy.png``
(per-layer entropy over training); the figures only with ``diagnostics.figures``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import lightning as L
import numpy as np
import torch
from torch import Tensor

from bench.config import DiagnosticsConfig
from bench.diagnostics.attention.stats import attention_stats
from bench.diagnostics.base import Diagnostic, model_of
from bench.diagnostics.batches import Batch, batch_size_of, clone_batch, slice_batch
from bench.diagnostics.context import autocast_precision, compute_dtype, isolated_rng
from bench.diagnostics.gradients.noise_scale import NoiseScale
from bench.diagnostics.gradients.stats import (
    first_last_ratio,
    grad_norms,
    param_grad_norms,
    snapshot,
    squared_grad_norm,
    total_grad_norm,
    update_ratios,
)
from bench.diagnostics.grouping import Layout, ffn_output_weights
from bench.diagnostics.loss import loss_name, training_loss
from bench.diagnostics.run_figures import draw_figures
from bench.diagnostics.throughput.stopwatch import exclude_from_throughput
from bench.io import save_npz
from bench.tasks.vocab import real_positions

LossFn = Callable[[L.LightningModule, Batch], Tensor]


ForwardFn = Callable[[L.LightningModule, Batch], Any]


def _default_forward(pl_module: L.LightningModule, batch: Batch) -> Any:
    return pl_module(batch)


def default_query_masks(pl_module: L.LightningModule, batch: Batch) -> dict[str, Tensor] | None:
    """The real (unpadded) query positions of a bench batch per stack; None for other batches."""
    try:
        return real_positions(batch)
    except (KeyError, TypeError):  # not a bench batch: every query counts
        return None


class GradientDiagnostics(Diagnostic):
    """Gradient norms, update ratios, noise scale and attention entropy every N steps.

    Relies on ``model_of(pl_module)`` (the ``nn.Module``), ``loss_fn(pl_module, batch)``
    (default :func:`~bench.diagnostics.loss.training_loss`, for the noise scale) and
    ``forward_fn(pl_module, batch)`` (default ``pl_module(batch)``, for the
    entropy). Metrics go straight to ``trainer.loggers`` at the measured step, so
    they are not lost between Lightning's ``log_every_n_steps``. Assumes one
    batch per optimizer step (no gradient accumulation). All work runs inside
    :func:`exclude_from_throughput`.

    Noise scale, in the weights' dtype with autocast off (float32 in a
    ``bf16-mixed`` run): ``B_big`` = the training batch (in a float32 run its
    gradient is in ``p.grad`` before clipping; in a ``bf16-mixed`` or
    ``16-mixed`` run, whose training gradient went through bf16/fp16 matmuls,
    it is recomputed in float32), ``B_small`` = its first half (one extra
    forward/backward, two under autocast, on measured steps only);
    ``gradients.npz`` records the dtype as ``noise_scale_dtype``. Both
    gradients must be of the same loss, the one
    training descends: with label smoothing, a smoothed big-batch gradient
    against unsmoothed half-batch ones inflates B_simple several times, so
    ``loss_fn`` must be the training loss (the default is; ``gradients.npz``
    records it as ``loss``). Entropy: the first ``entropy_examples`` examples of
    the first training batch, kept fixed for the whole run, over real (unpadded)
    query positions only.

    Runs: ``on_train_batch_start`` (entropy), ``on_before_optimizer_step`` (norms,
    noise scale), ``on_train_batch_end`` (update ratios, logging) on measured
    steps; ``on_train_end`` writes the files on the global-zero process.
    """

    name: ClassVar[str] = "gradients"
    metrics: ClassVar[str] = "cond/"
    files: ClassVar[tuple[str, ...]] = ("gradients.npz", "grad_norm_depth.png", "attn_entropy.png")

    def __init__(
        self,
        cfg: DiagnosticsConfig,
        out_dir: str | Path,
        *,
        loss_fn: LossFn = training_loss,
        forward_fn: ForwardFn = _default_forward,
        noise_ema: float = 0.9,
        entropy_examples: int = 8,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.every = cfg.gradients_every
        self.loss_fn, self.forward_fn = loss_fn, forward_fn
        self.noise = NoiseScale(noise_ema)
        self.entropy_examples = entropy_examples
        self.layout: Layout | None = None
        self.ffn_out: dict[str, Tensor] = {}  # each block's W2 (setup)
        self.history: list[dict[str, float]] = []  # one dict per measured step (with "step")
        self.entropy: list[tuple[int, dict[str, Tensor]]] = []
        self._fixed: Batch | None = None
        self._batch: Batch | None = None
        self._step: int | None = None
        self._before: list[Tensor] | None = None
        self._row: dict[str, float] = {}
        self.loss = ""  # what the noise scale differentiates (set in setup)
        self.noise_dtype = "float32"  # what its gradients are computed in (set in setup)

    # -- hooks

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.layout = Layout.of(model_of(pl_module))
        self.ffn_out = ffn_output_weights(model_of(pl_module))
        self.loss = loss_name(pl_module, self.loss_fn)
        self.noise_dtype = compute_dtype(model_of(pl_module))  # float32 in a bf16-mixed run

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self.cfg.attention_entropy and self._fixed is None:
            self._fixed = clone_batch(slice_batch(batch, self.entropy_examples))
        if step % self.every:
            return  # the common case: nothing else to do
        self._batch, self._step, self._row = batch, step, {}
        if self.cfg.attention_entropy:
            with exclude_from_throughput():
                self._measure_entropy(trainer, pl_module, step)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self._batch is None or self.layout is None:
            return
        with exclude_from_throughput():
            row = self._row
            if self.cfg.gradients:
                norms = grad_norms(model_of(pl_module), self.layout)
                row.update({f"cond/grad_norm/{k}": v for k, v in norms.items() if k != "total"})
                row["cond/grad_norm_total"] = norms.get("total", 0.0)
                ffn_out = param_grad_norms(self.ffn_out)
                row.update({f"cond/ffn_out_grad_norm/{k}": v for k, v in ffn_out.items()})
                for prefix, blocks in self.layout.stacks().items():
                    key = (
                        "cond/enc_grad_norm_ratio_first_last"
                        if prefix == "enc_block"
                        else "cond/grad_norm_ratio_first_last"
                    )
                    row[key] = first_last_ratio(norms, blocks)
                self._before = snapshot(self.layout)
            if self.cfg.noise_scale:
                self._measure_noise(trainer, pl_module, row)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
    ) -> None:
        if self._batch is None or self.layout is None or self._step is None:
            return
        with exclude_from_throughput():
            row = self._row
            if self._before is not None:
                # p.grad still holds what the optimizer used: Lightning zeroes it at the next closure.
                row["cond/grad_norm_total_clipped"] = total_grad_norm(self.layout.params)
                ratios = update_ratios(self.layout, self._before)
                row["cond/update_ratio_total"] = ratios.pop("total", math.nan)
                row.update({f"cond/update_ratio/{k}": v for k, v in ratios.items()})
            self._log(trainer, row, self._step)
        self._batch = self._before = self._step = None

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            with exclude_from_throughput():
                self.save()

    # -- measurements

    def _measure_entropy(self, trainer: L.Trainer, pl_module: L.LightningModule, step: int) -> None:
        if self._fixed is None:
            return
        with trainer.precision_plugin.forward_context():
            stats = attention_stats(
                model_of(pl_module),
                lambda: self.forward_fn(pl_module, self._fixed),
                default_query_masks(pl_module, self._fixed),
            )
        row = self._row
        row.update({f"cond/{k}": v for k, v in stats.output.items()})
        row.update({f"cond/attn_logit_max/{k}": v for k, v in stats.logit_max.items()})
        for k, mass in stats.first_mass.items():
            row[f"cond/attn_first_mass/{k}"] = mass
            row[f"cond/attn_first_mass_ratio/{k}"] = mass / stats.first_mass_uniform[k]
        ent = stats.entropy
        if not ent:
            return
        self.entropy.append((step, ent))
        row.update({f"cond/attn_entropy/{k}": float(v.mean()) for k, v in ent.items()})
        row.update({f"cond/attn_entropy_min/{k}": float(v.min()) for k, v in ent.items()})
        row.update({f"cond/attn_entropy_uniform/{k}": v for k, v in stats.uniform.items()})

    def _measure_noise(
        self, trainer: L.Trainer, pl_module: L.LightningModule, row: dict[str, float]
    ) -> None:
        assert self.layout is not None
        b_big = batch_size_of(self._batch)
        if b_big < 2:
            return
        b_small = b_big // 2
        params = self.layout.params
        if autocast_precision(trainer.precision):  # the training gradient is bf16/fp16's
            sq_big = self._full_precision_sq_norm(trainer, pl_module, self._batch)
        else:  # the full-batch gradient of this step, before clipping
            sq_big = total_grad_norm(params) ** 2
        sq_small = self._full_precision_sq_norm(
            trainer, pl_module, slice_batch(self._batch, b_small)
        )
        self.noise.update(sq_small, sq_big, b_small, b_big)
        row["cond/noise_scale"] = self.noise.value
        row["cond/noise_scale_grad_sq"] = self.noise.grad_sq
        row["cond/noise_scale_trace"] = self.noise.trace

    def _full_precision_sq_norm(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch
    ) -> float:
        """``|∇loss|²`` on ``batch`` in the weights' dtype (autocast off inside the
        precision plugin's context), leaving ``p.grad`` alone."""
        assert self.layout is not None
        with (
            isolated_rng(pl_module.device),
            torch.enable_grad(),
            trainer.precision_plugin.forward_context(),
            torch.autocast(pl_module.device.type, enabled=False),
        ):
            loss = self.loss_fn(pl_module, batch)
        return squared_grad_norm(loss.float(), self.layout.params)

    def _log(self, trainer: L.Trainer, row: dict[str, float], step: int) -> None:
        if not row:
            return
        self.history.append({"step": float(step), **row})
        for logger in trainer.loggers:
            logger.log_metrics(row, step=step)

    # -- files

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything measured so far as arrays (what ``gradients.npz`` holds).

        ``steps [K]``; ``keys [M]`` and ``values [K, M]`` (every logged ``cond/``
        scalar, nan where absent); ``blocks [NB]`` and ``grad_norm_blocks [K, NB]``;
        ``entropy_steps [E]``, ``entropy_layers [NL]``, ``attn_entropy [E, NL, H]``.
        """
        keys = sorted({k for row in self.history for k in row if k != "step"})
        values = np.array(
            [[row.get(k, math.nan) for k in keys] for row in self.history], dtype=np.float64
        )
        blocks = list(self.layout.blocks) if self.layout else []
        block_norms = np.array(
            [[row.get(f"cond/grad_norm/{b}", math.nan) for b in blocks] for row in self.history],
            dtype=np.float64,
        )
        out = {
            "steps": np.array([int(r["step"]) for r in self.history], dtype=np.int64),
            "keys": np.array(keys, dtype=str),
            "values": values.reshape(len(self.history), len(keys)),
            "blocks": np.array(blocks, dtype=str),
            "grad_norm_blocks": block_norms.reshape(len(self.history), len(blocks)),
        }
        layers = list(self.entropy[0][1]) if self.entropy else []
        heads = len(self.entropy[0][1][layers[0]]) if layers else 0
        ent = np.full((len(self.entropy), len(layers), heads), math.nan)
        for i, (_, per_layer) in enumerate(self.entropy):
            for j, name in enumerate(layers):
                if name in per_layer:
                    ent[i, j] = per_layer[name].numpy()
        out["entropy_steps"] = np.array([s for s, _ in self.entropy], dtype=np.int64)
        out["entropy_layers"] = np.array(layers, dtype=str)
        out["attn_entropy"] = ent
        out["loss"] = np.array(self.loss)
        out["noise_scale_dtype"] = np.array(self.noise_dtype)
        return out

    def save(self) -> list[Path]:
        """Write ``gradients.npz`` and (``figures``) the figures atomically; the paths written."""
        d = self.out_dir / "diagnostics"
        written = [save_npz(d / "gradients.npz", **self.arrays())]
        if self.cfg.figures:  # bench.diagnostics.run_figures draws them from the npz
            written += draw_figures(written[0], "gradients.npz")
        return written

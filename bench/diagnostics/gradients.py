"""Gradient conditioning: per-block gradient norms, update/weight ratios, the
gradient noise scale and attention entropy.

Plain functions work on any ``nn.Module`` (e.g. in a notebook);
:class:`GradientDiagnostics` runs them from Lightning hooks every
``DiagnosticsConfig.gradients_every`` optimizer steps, including step 0 (at
init, before any update), and does nothing else on the other steps.

Parameters are grouped by name (the model contract): ``blocks.{i}`` ->
``block_{i}``; ``encoder.blocks.{i}`` / ``decoder.blocks.{i}`` -> ``enc_block_{i}``
/ ``dec_block_{i}``. Inside a block the sublayer is ``norm`` when any module on
the path has ``norm`` in its name (``attn_res.norm``, ``attn.q_norm``), else
``attn``, ``cross_attn`` or ``ffn``. Outside blocks: ``embed`` (token embeddings
and positional parameters ``pos``), ``final_norm``, ``lm_head``, ``other``.

Logged keys (``step`` = optimizer updates done before the measured one, so the
values line up with ``train/loss`` of the same batch):

=====================================  ===========================================================
``cond/grad_norm/{group}``             L2 norm of the group's gradient (a block or a non-block group)
``cond/grad_norm/{block}/{sublayer}``  the same per sublayer (attn, cross_attn, ffn, norm)
``cond/grad_norm_total``               global gradient norm before clipping
``cond/grad_norm_total_clipped``       global norm after clipping, measured on the gradients
                                       the optimizer used
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
``cond/output_logit_max``              largest output logit on the fixed batch's real positions
``cond/output_logit_mean``             mean output logit there
``cond/log_z_mean``                    mean log-partition ``logsumexp(logits)`` there
=====================================  ===========================================================

Files in ``<out_dir>/diagnostics/``: ``gradients.npz`` (per-step arrays, per-head
entropies, and ``loss``: the loss the noise scale differentiates, the training
loss with its label smoothing), ``grad_norm_depth.png`` (norm against depth at
init and at the end; only when norms were measured) and ``attn_entropy.png``
(per-layer entropy over training).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import grad_norm
from torch import Tensor, nn
from torch.utils.data import DataLoader

from bench.config import DiagnosticsConfig
from bench.diagnostics.functional import loss_name, training_loss
from bench.diagnostics.throughput import DIAGNOSTICS_TIME, exclude_from_throughput

Batch = Any
LossFn = Callable[[L.LightningModule, Batch], Tensor]
ForwardFn = Callable[[L.LightningModule, Batch], Any]

# ----------------------------------------------------------------------------- grouping

_BLOCK = re.compile(r"^(?:(?P<stack>encoder|decoder)\.)?blocks\.(?P<i>\d+)\.(?P<rest>.+)$")
_ATTN = re.compile(
    r"^(?:(?P<stack>encoder|decoder)\.)?blocks\.(?P<i>\d+)\.(?P<kind>attn|cross_attn)$"
)
_BLOCK_PREFIX = {None: "block", "encoder": "enc_block", "decoder": "dec_block"}
_LAYER_PREFIX = {None: "layer", "encoder": "enc_layer", "decoder": "dec_layer"}
_STACK_ORDER = {"enc_block": 0, "block": 1, "dec_block": 2}
SUBLAYERS = ("attn", "cross_attn", "ffn")


def classify_parameter(name: str) -> tuple[str, str | None]:
    """``(group, sublayer)`` of a parameter name; sublayer is None outside blocks."""
    m = _BLOCK.match(name)
    if m:
        block = f"{_BLOCK_PREFIX[m['stack']]}_{m['i']}"
        modules = m["rest"].split(".")[:-1]
        if any("norm" in part for part in modules):
            return block, "norm"
        return block, modules[0] if modules and modules[0] in SUBLAYERS else "other"
    modules = name.split(".")[:-1]
    if any("embed" in part for part in modules) or "pos" in modules:
        return "embed", None
    if any("norm" in part for part in modules):
        return "final_norm", None
    if "lm_head" in modules:
        return "lm_head", None
    return "other", None


def _block_order(block: str) -> tuple[int, int]:
    prefix, _, index = block.rpartition("_")
    return _STACK_ORDER[prefix], int(index)


@dataclass(frozen=True)
class Layout:
    """Which group every (unique, trainable) parameter of a model belongs to."""

    names: tuple[str, ...]
    params: tuple[nn.Parameter, ...]
    groups: tuple[str, ...]  # per parameter: "block_0" or "embed"
    sublayers: tuple[str | None, ...]  # per parameter: "attn", "norm", ... or None
    blocks: tuple[str, ...]  # block groups in depth order (encoder first)

    @classmethod
    def of(cls, model: nn.Module) -> Layout:
        """Group ``model.named_parameters()`` (tied weights appear once)."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        kinds = [classify_parameter(n) for n, _ in named]
        blocks = sorted({g for g, s in kinds if s is not None}, key=_block_order)
        return cls(
            names=tuple(n for n, _ in named),
            params=tuple(p for _, p in named),
            groups=tuple(g for g, _ in kinds),
            sublayers=tuple(s for _, s in kinds),
            blocks=tuple(blocks),
        )

    def stacks(self) -> dict[str, list[str]]:
        """Blocks per stack prefix, in depth order: ``{"block": [...]}`` or enc/dec."""
        out: dict[str, list[str]] = {}
        for b in self.blocks:
            out.setdefault(b.rpartition("_")[0], []).append(b)
        return out


def _group_norms(layout: Layout, per_param_sq: Sequence[float | None]) -> dict[str, float]:
    """Aggregate squared per-parameter norms into group, sublayer and total norms."""
    sums: dict[str, float] = {}
    for group, sub, sq in zip(layout.groups, layout.sublayers, per_param_sq, strict=True):
        if sq is None:
            continue
        sums[group] = sums.get(group, 0.0) + sq
        if sub is not None:
            key = f"{group}/{sub}"
            sums[key] = sums.get(key, 0.0) + sq
        sums["total"] = sums.get("total", 0.0) + sq
    return {k: math.sqrt(v) for k, v in sums.items()}


def grad_norms(model: nn.Module, layout: Layout | None = None) -> dict[str, float]:
    """L2 gradient norms per group (``block_0``), sublayer (``block_0/attn``) and ``total``.

    Per-parameter norms come from Lightning's ``grad_norm``; parameters without a
    gradient are left out.
    """
    layout = layout or Layout.of(model)
    per_param = grad_norm(model, 2.0)
    values = [per_param.get(f"grad_2.0_norm/{n}") for n in layout.names]
    present = [v for v in values if v is not None]
    floats = iter(torch.stack(present).float().tolist()) if present else iter(())  # one sync
    return _group_norms(layout, [next(floats) ** 2 if v is not None else None for v in values])


def total_grad_norm(params: Sequence[nn.Parameter]) -> float:
    """Global L2 norm of the gradients of ``params`` (what clip_grad_norm_ sees)."""
    grads = [p.grad.detach().float() for p in params if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


def first_last_ratio(norms: Mapping[str, float], blocks: Sequence[str]) -> float:
    """Gradient norm of the first block over the last (``nan`` if undefined)."""
    if len(blocks) < 1 or blocks[0] not in norms or blocks[-1] not in norms:
        return math.nan
    last = norms[blocks[-1]]
    return norms[blocks[0]] / last if last > 0 else math.nan


def snapshot(layout: Layout) -> list[Tensor]:
    """Copies of every parameter, taken before an optimizer step."""
    return [p.detach().clone() for p in layout.params]


def update_ratios(layout: Layout, before: Sequence[Tensor]) -> dict[str, float]:
    """``||θ_now - θ_before|| / ||θ_before||`` per group and ``total``."""
    diffs = torch.stack(
        [(p.detach() - b).float().norm() for p, b in zip(layout.params, before, strict=True)]
    )
    sizes = torch.stack([b.float().norm() for b in before])
    d2, w2 = (diffs**2).tolist(), (sizes**2).tolist()
    out_d: dict[str, float] = {}
    out_w: dict[str, float] = {}
    for group, dd, ww in zip(layout.groups, d2, w2, strict=True):
        for key in (group, "total"):
            out_d[key] = out_d.get(key, 0.0) + dd
            out_w[key] = out_w.get(key, 0.0) + ww
    return {k: math.sqrt(out_d[k] / out_w[k]) if out_w[k] > 0 else math.nan for k in out_d}


# ----------------------------------------------------------------------------- noise scale


def noise_scale_estimates(
    sq_small: float, sq_big: float, b_small: int, b_big: int
) -> tuple[float, float]:
    """Unbiased ``(|G|², tr(Σ))`` from squared gradient norms at two batch sizes.

    McCandlish et al. 2018, Appendix A.1: with ``E|G_B|² = |G|² + tr(Σ)/B``,
    ``|G|² ≈ (B_big|G_big|² - B_small|G_small|²) / (B_big - B_small)`` and
    ``tr(Σ) ≈ (|G_small|² - |G_big|²) / (1/B_small - 1/B_big)``.
    """
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got {b_small}, {b_big}")
    g2 = (b_big * sq_big - b_small * sq_small) / (b_big - b_small)
    trace = (sq_small - sq_big) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


class NoiseScale:
    """Exponential moving averages of both estimates; ``value`` = B_simple = tr(Σ)/|G|².

    Each estimate is noisy (and can be negative); the paper averages them before
    taking the ratio. Averages are bias-corrected like Adam's moments.
    """

    def __init__(self, beta: float = 0.9) -> None:
        self.beta, self.n = beta, 0
        self._g2 = self._trace = 0.0

    def update(self, sq_small: float, sq_big: float, b_small: int, b_big: int) -> float:
        g2, trace = noise_scale_estimates(sq_small, sq_big, b_small, b_big)
        self.n += 1
        self._g2 = self.beta * self._g2 + (1 - self.beta) * g2
        self._trace = self.beta * self._trace + (1 - self.beta) * trace
        return self.value

    @property
    def grad_sq(self) -> float:
        return self._g2 / (1 - self.beta**self.n) if self.n else math.nan

    @property
    def trace(self) -> float:
        return self._trace / (1 - self.beta**self.n) if self.n else math.nan

    @property
    def value(self) -> float:
        g2 = self.grad_sq
        return self.trace / g2 if self.n and g2 > 0 else math.nan


def batch_size_of(batch: Batch) -> int:
    """Leading dimension of the first tensor in a batch (dict, sequence or tensor)."""
    for t in _tensors(batch):
        return int(t.shape[0])
    raise ValueError("batch holds no tensor")


def _tensors(batch: Batch) -> Iterator[Tensor]:
    if isinstance(batch, Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for v in batch.values():
            yield from _tensors(v)
    elif isinstance(batch, list | tuple):
        for v in batch:
            yield from _tensors(v)


def slice_batch(batch: Batch, n: int) -> Batch:
    """The first ``n`` examples of a batch (tensors sliced along dim 0)."""
    if isinstance(batch, Tensor):
        return batch[:n]
    if isinstance(batch, Mapping):
        return {k: slice_batch(v, n) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(slice_batch(v, n) for v in batch)
    return batch


def squared_grad_norm(loss: Tensor, params: Sequence[nn.Parameter]) -> float:
    """``|∇loss|²`` over ``params`` without touching ``p.grad``."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    sq = [g.detach().float().pow(2).sum() for g in grads if g is not None]
    return float(torch.stack(sq).sum()) if sq else 0.0


# ----------------------------------------------------------------------------- attention entropy


def attention_entropy(probs: Tensor, query_mask: Tensor | None = None) -> Tensor:
    """Entropy (nats) per head of attention probabilities ``[B, H, T, S]`` -> ``[H]``.

    Mean over batch and queries of ``-Σ_s p log p``; masked keys have probability
    0 and add nothing (``xlogy(0, 0) = 0``). Uniform attention over S keys gives
    ``log S``, one-hot attention 0. ``query_mask [B, T]`` (True = a real token)
    leaves padded query positions out of the mean: a padding query attends to
    whatever the mask lets it and measures nothing about the model.
    """
    ent = -torch.special.xlogy(probs.float(), probs.float()).sum(-1)  # [B, H, T]
    if query_mask is not None:
        keep = query_mask.to(ent.device, torch.bool)[:, None, :].expand_as(ent)
        ent = ent.masked_fill(~keep, math.nan)
    return ent.transpose(0, 1).reshape(probs.shape[1], -1).nanmean(-1)


def _stack_of(layer: str) -> str:
    """``enc_layer_0`` -> encoder; decoder self- and cross-attention -> decoder (the queries')."""
    return "encoder" if layer.startswith("enc_layer") else "decoder"


def attention_layer_name(module_name: str) -> str:
    """``blocks.2.attn`` -> ``layer_2``; ``decoder.blocks.0.cross_attn`` -> ``dec_layer_0/cross``."""
    m = _ATTN.match(module_name)
    if not m:
        return module_name.replace(".", "/")
    name = f"{_LAYER_PREFIX[m['stack']]}_{m['i']}"
    return name + "/cross" if m["kind"] == "cross_attn" else name


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every module with a ``record_probs`` switch, by layer name, in model order."""
    return {
        attention_layer_name(name): m
        for name, m in model.named_modules()
        if isinstance(getattr(m, "record_probs", None), bool)
    }


@dataclass(frozen=True)
class AttentionStats:
    """What one eval-mode forward on the fixed batch says about attention and the output.

    ``entropy``: per layer, the entropy per head ``[H]``; ``logit_max``: per layer,
    the largest ``|q.k|/sqrt(d_head)`` over heads, real queries and the keys they
    may attend to; ``output``: ``output_logit_max`` (largest output logit),
    ``output_logit_mean`` (mean logit) and ``log_z_mean`` (mean log-partition
    ``logsumexp`` of the logits, what z-loss pushes to 0; Wortsman et al. 2023,
    Chowdhery et al. 2022) over the decoder's real positions; ``uniform``: per
    layer, the entropy uniform attention over the allowed keys would have (mean of
    ``log keys`` over real queries), the maximum ``entropy`` can reach.
    """

    entropy: dict[str, Tensor]
    logit_max: dict[str, float]
    output: dict[str, float]
    uniform: dict[str, float]


def _floats(values: Mapping[str, Tensor]) -> dict[str, float]:
    """Scalar tensors as floats, with one host sync."""
    if not values:
        return {}
    return dict(zip(values, torch.stack(list(values.values())).tolist(), strict=True))


def _mean_over_queries(per_query: Tensor, query_mask: Tensor | None = None) -> Tensor:
    """Mean over the batch and the real queries of a per-query value ``[B, 1, T]``."""
    if query_mask is not None:
        keep = query_mask.to(per_query.device, torch.bool)[:, None, :]
        per_query = per_query.masked_fill(~keep, math.nan)
    return per_query.nanmean()


def output_logit_stats(logits: Tensor, positions: Tensor | None = None) -> dict[str, float]:
    """Max and mean of output logits ``[B, T, V]`` and their mean log-partition.

    ``positions [B, T]`` (True = a real token) chooses the positions measured.
    """
    flat = logits.detach().float()
    flat = flat[positions.to(flat.device, torch.bool)] if positions is not None else flat
    flat = flat.reshape(-1, logits.shape[-1])
    if flat.shape[0] == 0:
        return {}
    values = torch.stack([flat.max(), flat.mean(), torch.logsumexp(flat, -1).mean()]).tolist()
    return dict(zip(("output_logit_max", "output_logit_mean", "log_z_mean"), values, strict=True))


@contextmanager
def recording_attention(model: nn.Module) -> Iterator[dict[str, nn.Module]]:
    """Eval mode with every attention layer's ``record_probs`` on, for one block of code;
    yields the layers by name. Restores the train/eval mode and drops what was recorded."""
    mods = attention_modules(model)
    was_training = model.training
    model.eval()
    try:
        for m in mods.values():
            m.record_probs = True
        yield mods
    finally:
        for m in mods.values():
            m.record_probs = False
            m.last_probs = None
            if hasattr(m, "last_logit_max"):
                m.last_logit_max = m.last_keys = None
        model.train(was_training)


@torch.no_grad()
def attention_stats(
    model: nn.Module,
    forward: Callable[[], Any],
    query_masks: Mapping[str, Tensor] | None = None,
) -> AttentionStats:
    """Attention entropy per head, largest attention logit per layer and output-logit
    statistics of one ``forward()`` in eval mode (see :class:`AttentionStats`).

    ``query_masks``: ``{"encoder": [B, S], "decoder": [B, T]}`` (True = real token,
    e.g. :func:`bench.training.module.real_positions`); a layer's padded queries are left out.
    Switches ``record_probs`` on for the call only and restores the train/eval mode.
    ``forward()``'s return value is taken as the output logits when it is a
    ``[B, T, V]`` tensor.
    """
    masks = query_masks or {}
    with recording_attention(model) as mods:
        logits = forward()
        entropy: dict[str, Tensor] = {}
        peaks: dict[str, Tensor] = {}
        uniform: dict[str, Tensor] = {}
        for name, m in mods.items():
            probs = getattr(m, "last_probs", None)
            if probs is None:
                continue
            mask = masks.get(_stack_of(name))
            entropy[name] = attention_entropy(probs, mask).cpu()
            peak = getattr(m, "last_logit_max", None)  # [B, H, T]
            if peak is not None:
                if mask is not None:
                    keep = mask.to(peak.device, torch.bool)[:, None, :].expand_as(peak)
                    peak = peak.masked_fill(~keep, 0.0)
                peaks[name] = peak.amax()
            keys = getattr(m, "last_keys", None)  # [B | 1, H | 1, T]
            if keys is not None:
                log_keys = keys[:, :1].float().log().expand(probs.shape[0], 1, probs.shape[2])
                uniform[name] = _mean_over_queries(log_keys, mask)
        logit_max, uniform_max = _floats(peaks), _floats(uniform)
        output = (
            output_logit_stats(logits, masks.get("decoder"))
            if isinstance(logits, Tensor) and logits.ndim == 3
            else {}
        )
        return AttentionStats(entropy, logit_max, output, uniform_max)


def attention_entropies(
    model: nn.Module,
    forward: Callable[[], Any],
    query_masks: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Per-head entropy ``[H]`` of every attention layer during ``forward()`` in eval mode
    (:func:`attention_stats`' ``entropy``)."""
    return attention_stats(model, forward, query_masks).entropy


# ----------------------------------------------------------------------------- callback


@contextmanager
def _isolated_rng(device: torch.device) -> Iterator[None]:
    """Diagnostics' dropout draws must not shift the training run's random stream."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def _default_forward(pl_module: L.LightningModule, batch: Batch) -> Any:
    return pl_module(batch)


def _default_query_masks(pl_module: L.LightningModule, batch: Batch) -> dict[str, Tensor] | None:
    from bench.training.module import real_positions

    try:
        return real_positions(batch)
    except (KeyError, TypeError):  # not a bench batch: every query counts
        return None


class GradientDiagnostics(L.Callback):
    """Gradient norms, update ratios, noise scale and attention entropy every N steps.

    Relies on ``pl_module.model`` (the ``nn.Module``), ``loss_fn(pl_module, batch)``
    (default :func:`~bench.diagnostics.functional.training_loss`, for the noise scale) and
    ``forward_fn(pl_module, batch)`` (default ``pl_module(batch)``, for the
    entropy). Metrics go straight to ``trainer.loggers`` at the measured step, so
    they are not lost between Lightning's ``log_every_n_steps``. Assumes one
    batch per optimizer step (no gradient accumulation). All work runs inside
    :func:`exclude_from_throughput`.

    Noise scale: ``B_big`` = the training batch (its gradient is in ``p.grad``
    before clipping), ``B_small`` = its first half (one extra forward/backward,
    on measured steps only). Both gradients must be of the same loss, the one
    training descends: with label smoothing, a smoothed big-batch gradient
    against unsmoothed half-batch ones inflates B_simple several times, so
    ``loss_fn`` must be the training loss (the default is; ``gradients.npz``
    records it as ``loss``). Entropy: the first ``entropy_examples`` examples of
    the first training batch, kept fixed for the whole run, over real (unpadded)
    query positions only.
    """

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
        self.history: list[dict[str, float]] = []  # one dict per measured step (with "step")
        self.entropy: list[tuple[int, dict[str, Tensor]]] = []
        self._fixed: Batch | None = None
        self._batch: Batch | None = None
        self._step: int | None = None
        self._before: list[Tensor] | None = None
        self._row: dict[str, float] = {}
        self.loss = ""  # what the noise scale differentiates (set in setup)

    # -- hooks

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.layout = Layout.of(pl_module.model)
        self.loss = loss_name(pl_module, self.loss_fn)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if self.cfg.attention_entropy and self._fixed is None:
            self._fixed = _clone(slice_batch(batch, self.entropy_examples))
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
                norms = grad_norms(pl_module.model, self.layout)
                row.update({f"cond/grad_norm/{k}": v for k, v in norms.items() if k != "total"})
                row["cond/grad_norm_total"] = norms.get("total", 0.0)
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
                pl_module.model,
                lambda: self.forward_fn(pl_module, self._fixed),
                _default_query_masks(pl_module, self._fixed),
            )
        row = self._row
        row.update({f"cond/{k}": v for k, v in stats.output.items()})
        row.update({f"cond/attn_logit_max/{k}": v for k, v in stats.logit_max.items()})
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
        sq_big = (
            total_grad_norm(self.layout.params) ** 2
        )  # the full-batch gradient, before clipping
        with (
            _isolated_rng(pl_module.device),
            torch.enable_grad(),
            trainer.precision_plugin.forward_context(),
        ):
            loss = self.loss_fn(pl_module, slice_batch(self._batch, b_small))
        sq_small = squared_grad_norm(loss.float(), self.layout.params)
        self.noise.update(sq_small, sq_big, b_small, b_big)
        row["cond/noise_scale"] = self.noise.value
        row["cond/noise_scale_grad_sq"] = self.noise.grad_sq
        row["cond/noise_scale_trace"] = self.noise.trace

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
        return out

    def save(self) -> list[Path]:
        """Write ``gradients.npz`` and the figures atomically; returns the paths written."""
        d = self.out_dir / "diagnostics"
        d.mkdir(parents=True, exist_ok=True)
        arrays = self.arrays()
        written = [_atomic_write(d / "gradients.npz", lambda f: np.savez(f, **arrays))]
        drawn = arrays["grad_norm_blocks"][[0, -1]] if len(arrays["steps"]) else np.zeros(0)
        if len(arrays["blocks"]) and (np.nan_to_num(drawn) > 0).any():  # log scale needs > 0
            written.append(
                _atomic_write(d / "grad_norm_depth.png", lambda f: _plot_depth(arrays, f))
            )
        if len(arrays["entropy_steps"]):
            written.append(
                _atomic_write(d / "attn_entropy.png", lambda f: _plot_entropy(arrays, f))
            )
        return written


def _clone(batch: Batch) -> Batch:
    if isinstance(batch, Tensor):
        return batch.detach().clone()
    if isinstance(batch, Mapping):
        return {k: _clone(v) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_clone(v) for v in batch)
    return batch


def _atomic_write(path: Path, write: Callable[[Any], None]) -> Path:
    """Write through a temp file in the same directory, then rename over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _plot_depth(arrays: Mapping[str, np.ndarray], f: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks, norms, steps = arrays["blocks"], arrays["grad_norm_blocks"], arrays["steps"]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(blocks))
    rows = [(0, "init")] + ([(len(steps) - 1, "end")] if len(steps) > 1 else [])
    for i, label in rows:
        ax.plot(x, norms[i], marker="o", label=f"{label} (step {steps[i]})")
    ax.set_xticks(x, list(blocks), rotation=45, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_xlabel("block (input -> output)")
    ax.set_ylabel("gradient L2 norm")
    ax.set_title("Gradient norm against depth")
    ax.legend()
    fig.tight_layout()
    fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


def _plot_entropy(arrays: Mapping[str, np.ndarray], f: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    mean = np.nanmean(arrays["attn_entropy"], axis=2)  # [E, NL]
    for j, name in enumerate(arrays["entropy_layers"]):
        ax.plot(arrays["entropy_steps"], mean[:, j], label=str(name))
    ax.set_xlabel("step")
    ax.set_ylabel("attention entropy (nats)")
    ax.set_title("Attention entropy per layer (mean over heads)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f, format="png", dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------- overhead benchmark


class _LoopTimer(L.Callback):
    """Wall time of the training loop and the diagnostics time inside it (files at the end excluded)."""

    def __init__(self) -> None:
        self.start = self.end = 0.0
        self.excluded_start = self.excluded_end = 0.0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Batch, batch_idx: int
    ) -> None:
        if not self.start:  # batch_idx restarts every epoch; the clock must not
            self.start, self.excluded_start = time.perf_counter(), DIAGNOSTICS_TIME.total

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Runs before the diagnostics callback's own on_train_end (it comes first in the list).
        self.end, self.excluded_end = time.perf_counter(), DIAGNOSTICS_TIME.total


def benchmark_overhead(
    overrides: Mapping[str, Any] | None = None,
    *,
    steps: int = 100,
    repeats: int = 2,
    out_dir: str | Path | None = None,
) -> dict[str, float]:
    """Train the same model with and without :class:`GradientDiagnostics` in one process.

    Uses :class:`bench.training.module.BenchModule` on random tokens (a plain dataloader, no
    validation, no logger) with a real ``Trainer``. Runs alternate ``repeats``
    times and the fastest of each is kept. ``overrides`` are dotted RunConfig
    keys (default: a d_model=128, 2-layer decoder, seq 128, batch 16, every 25
    steps with noise scale and entropy on). Returns seconds per step without and
    with the callback, their ratio, and the same for norms only (noise scale and
    entropy off), and the callback's own seconds per step (time inside
    :func:`exclude_from_throughput`, less noisy) as a fraction of the plain step.
    """
    from bench.config import build_run_config
    from bench.training.module import BenchModule

    base = {
        "model.d_model": 128,
        "model.n_layers": 2,
        "model.n_heads": 4,
        "task.seq_len": 128,
        "task.batch_size": 16,
        "train.max_steps": steps,
        "diagnostics.gradients_every": 25,
    }
    cfg = build_run_config(overrides={**base, **dict(overrides or {})})
    vocab, b, t = cfg.model.vocab_size, cfg.task.batch_size, cfg.task.seq_len
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (b * 8, t + 1), generator=gen)
    data = [
        {"input_ids": ids[i : i + b, :-1], "labels": ids[i : i + b, 1:]}
        for i in range(0, len(ids), b)
    ]
    work = Path(out_dir or tempfile.mkdtemp(prefix="bench-overhead-"))

    spent: dict[str, list[float]] = {"with": [], "norms_only": []}

    def run(callback: L.Callback | None, label: str = "") -> float:
        torch.manual_seed(0)
        timer = _LoopTimer()
        trainer = L.Trainer(
            max_steps=steps,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
            gradient_clip_val=cfg.train.grad_clip,
            callbacks=[timer] + ([callback] if callback else []),
        )
        trainer.fit(BenchModule(cfg), train_dataloaders=DataLoader(data, batch_size=None))
        if label:  # the callback's own time, read off the throughput stopwatch
            spent[label].append((timer.excluded_end - timer.excluded_start) / steps)
        return (timer.end - timer.start) / steps

    full = cfg.diagnostics
    norms_only = full.model_copy(update={"noise_scale": False, "attention_entropy": False})
    times: dict[str, list[float]] = {"without": [], "with": [], "norms_only": []}
    for _ in range(repeats):
        times["without"].append(run(None))
        times["with"].append(run(GradientDiagnostics(full, work), "with"))
        times["norms_only"].append(run(GradientDiagnostics(norms_only, work), "norms_only"))
    best = {k: min(v) for k, v in times.items()}
    return {
        "step_time_without": best["without"],
        "step_time_with": best["with"],
        "step_time_norms_only": best["norms_only"],
        "ratio": best["with"] / best["without"],
        "ratio_norms_only": best["norms_only"] / best["without"],
        # Less noisy on a busy machine: callback seconds per step over the plain step time.
        "callback_fraction": min(spent["with"]) / best["without"],
        "callback_fraction_norms_only": min(spent["norms_only"]) / best["without"],
        "every": float(full.gradients_every),
        "steps": float(steps),
    }

"""Attention entropy, attention-logit and output-logit statistics of one forward.

Measured in eval mode on a fixed batch by :class:`bench.diagnostics.gradients.callback.
GradientDiagnostics` (``cond/attn_entropy/...``, ``cond/attn_logit_max/...``,
``cond/attn_first_mass/...``, ``cond/output_logit_max``, ``cond/log_z_mean``); the
attention layers are recorded only inside :func:`recording_attention`
(:mod:`bench.diagnostics.attention.recorder`: forward hooks; the model keeps no state).
:func:`record_maps` keeps one forward's maps themselves, for the attention-maps callback.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bench.diagnostics.attention.plot import SINK_TOKEN
from bench.diagnostics.attention.recorder import AttentionRecorder
from bench.diagnostics.attention.recorder import attention_modules as layer_modules
from bench.diagnostics.batches import model_forward
from bench.diagnostics.grouping import attention_layers, stack_of_layer
from bench.model.attention import Attention
from bench.tasks.vocab import real_positions


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


def attention_modules(model: nn.Module) -> dict[str, Attention]:
    """Every attention layer, by layer name, in model order.

    A bench block's attention is named like its block (``layer_2``,
    ``dec_layer_0/cross``); any other by its module path (``a/b``).
    """
    named = attention_layers(model)
    return {named.get(id(m), path.replace(".", "/")): m for path, m in layer_modules(model)}


# Queries whose attention on key 0 is measured: the later part of the sequence, position
# t >= FIRST_MASS_FROM x T. Early queries have few keys (query 0 has only key 0, mass 1),
# so their mass on key 0 is large under any pattern and says nothing about a sink.
FIRST_MASS_FROM = 0.5


def first_key_mass(
    probs: Tensor, keys: Tensor, query_mask: Tensor | None = None, sinks: int = 0
) -> tuple[Tensor, Tensor]:
    """Attention on the first key (Xiao et al. 2023, "Efficient Streaming Language Models
    with Attention Sinks", Section 3.1: the attention sink) and what uniform attention
    would put there.

    ``probs [B, H, T, S]``, ``keys [B | 1, H | 1, T]`` (keys each query may attend to).
    Over the heads, the batch and the real queries at ``t >= FIRST_MASS_FROM * T``:
    the mean probability on key 0, and the mean of ``1 / keys``, uniform attention's
    probability there (causal, unpadded: ``mean_t 1 / (t + 1)``). Assumes key 0 is
    visible to every such query (causal or bidirectional, padding at the end).
    With ``sinks`` learned sink keys in front (``model.sink_tokens``; ``probs`` has the
    token queries only), the mass on the sinks together and ``sinks / keys``: the sink
    token is there to take the mass that the first token takes otherwise (Sec. 3.3).
    Returns two 0-d tensors ``(mass, uniform)``.
    """
    b, _, t, _ = probs.shape
    late = torch.arange(t, device=probs.device) >= math.ceil(FIRST_MASS_FROM * t)
    keep = late[None, :].expand(b, t)
    if query_mask is not None:
        keep = keep & query_mask.to(probs.device, torch.bool)
    first = max(sinks, 1)  # the keys read: the sinks, else key 0
    mass = probs[..., :first].float().sum(-1).mean(1, keepdim=True)  # [B, 1, T]
    uniform = (first / keys[:, :1].float()).expand(b, 1, t)
    return _mean_over_queries(mass, keep), _mean_over_queries(uniform, keep)


@dataclass(frozen=True)
class AttentionStats:
    """What one eval-mode forward on the fixed batch says about attention and the output.

    ``entropy``: per layer, the entropy per head ``[H]``, for the layers whose map is a
    distribution only (a sigmoid map's rows do not sum to 1, a differential map has
    negative weights: entropy is not defined for them, and those layers have none);
    ``logit_max``: per layer,
    the largest ``|q.k|/sqrt(d_head)`` over heads, real queries and the keys they
    may attend to; ``output``: ``output_logit_max`` (largest output logit),
    ``output_logit_mean`` (mean logit) and ``log_z_mean`` (mean log-partition
    ``logsumexp`` of the logits, what z-loss pushes to 0; Wortsman et al. 2023,
    Chowdhery et al. 2022) over the decoder's real positions; ``uniform``: per
    layer, the entropy uniform attention over the allowed keys would have (mean of
    ``log keys`` over real queries), the maximum ``entropy`` can reach;
    ``first_mass`` and ``first_mass_uniform``: per layer, :func:`first_key_mass`.
    In a stack with attention-sink positions (``model.sink_tokens``) every number is over
    the token queries (the sinks' own rows are left out), entropy and uniform count the
    sink keys among the keys, and ``first_mass`` is the mass on the sinks.
    """

    entropy: dict[str, Tensor]
    logit_max: dict[str, float]
    output: dict[str, float]
    uniform: dict[str, float]
    first_mass: dict[str, float] = field(default_factory=dict)
    first_mass_uniform: dict[str, float] = field(default_factory=dict)


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
def recording_attention(model: nn.Module) -> Iterator[AttentionRecorder]:
    """Eval mode with every attention layer recorded (by layer name), for one block of
    code; restores the train/eval mode and removes the hooks."""
    was_training = model.training
    model.eval()
    try:
        with AttentionRecorder(attention_modules(model)) as recorder:
            yield recorder
    finally:
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
    e.g. :func:`bench.tasks.vocab.real_positions`); a layer's padded queries are left out.
    Records the attention layers for the call only and restores the train/eval mode.
    ``forward()``'s return value is taken as the output logits when it is a
    ``[B, T, V]`` tensor.
    """
    masks = query_masks or {}
    with recording_attention(model) as recorder:
        logits = forward()
        entropy: dict[str, Tensor] = {}
        peaks: dict[str, Tensor] = {}
        uniform: dict[str, Tensor] = {}
        first: dict[str, Tensor] = {}
        first_uniform: dict[str, Tensor] = {}
        for name in recorder.layers:  # model order
            if (rec := recorder.records.get(name)) is None:
                continue
            rec = rec.without_sink_queries()
            probs, keys = rec.probs, rec.keys
            mask = masks.get(stack_of_layer(name))
            if rec.distribution:  # sigmoid and differential maps: no entropy (not defined)
                entropy[name] = attention_entropy(probs, mask).cpu()
            peak = rec.logit_max  # [B, H, T]
            if mask is not None:
                keep = mask.to(peak.device, torch.bool)[:, None, :].expand_as(peak)
                peak = peak.masked_fill(~keep, 0.0)
            peaks[name] = peak.amax()
            log_keys = keys[:, :1].float().log().expand(probs.shape[0], 1, probs.shape[2])
            uniform[name] = _mean_over_queries(log_keys, mask)
            first[name], first_uniform[name] = first_key_mass(probs, keys, mask, rec.sink_keys)
        logit_max, uniform_max = _floats(peaks), _floats(uniform)
        output = (
            output_logit_stats(logits, masks.get("decoder"))
            if isinstance(logits, Tensor) and logits.ndim == 3
            else {}
        )
        return AttentionStats(
            entropy, logit_max, output, uniform_max, _floats(first), _floats(first_uniform)
        )


def attention_entropies(
    model: nn.Module,
    forward: Callable[[], Any],
    query_masks: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Per-head entropy ``[H]`` of every attention layer during ``forward()`` in eval mode
    (:func:`attention_stats`' ``entropy``)."""
    return attention_stats(model, forward, query_masks).entropy


Batch = dict[str, Tensor]


def _tokens(batch: Batch) -> dict[str, Tensor]:
    """Token ids of each stack's positions: ``decoder`` (queries) and ``encoder``."""
    if "src" in batch:
        return {"encoder": batch["src"], "decoder": batch["tgt_in"]}
    return {"decoder": batch["input_ids"]}


@torch.no_grad()
def record_maps(model: torch.nn.Module, batch: Batch, max_len: int) -> dict[str, Any]:
    """One eval-mode forward of ``batch``: per layer, the probabilities ``[K, H, T, S]``
    (cropped to ``max_len``), real query and key counts per example, and token ids.

    In a stack with attention-sink positions (``model.sink_tokens = k``) the maps have
    the token queries only and the ``k`` sink keys first (``S = k + ...``, not cropped);
    the key counts include them and their token id is :data:`SINK_TOKEN`.
    """
    with recording_attention(model) as recorder:
        model_forward(model, batch)
        real = {
            k: v.sum(-1).clamp(max=max_len).cpu().numpy() for k, v in real_positions(batch).items()
        }
        tokens = {k: v[:, :max_len].cpu().numpy() for k, v in _tokens(batch).items()}
        out: dict[str, Any] = {
            "layers": [],
            "maps": [],
            "queries": [],
            "keys": [],
            "query_tokens": [],
            "key_tokens": [],
        }
        for name in recorder.layers:  # model order
            if (rec := recorder.records.get(name)) is None:
                continue
            rec = rec.without_sink_queries()
            sinks, probs = rec.sink_keys, rec.probs
            query_stack = stack_of_layer(name)
            key_stack = "encoder" if name.endswith("/cross") else query_stack
            key_tokens = tokens[key_stack]
            if sinks:
                marks = np.full((key_tokens.shape[0], sinks), SINK_TOKEN, key_tokens.dtype)
                key_tokens = np.concatenate([marks, key_tokens], axis=1)
            out["layers"].append(name)
            out["maps"].append(probs[..., :max_len, : sinks + max_len].float().cpu().numpy())
            out["queries"].append(real[query_stack])
            out["keys"].append(real[key_stack] + sinks)
            out["query_tokens"].append(tokens[query_stack])
            out["key_tokens"].append(key_tokens)
        return out

"""Attention probabilities read from a model that only computes: forward hooks.

:class:`AttentionRecorder` hooks every :class:`~bench.model.attention.Attention`
layer it is given for one block of code. After a layer's forward it recomputes the
queries, keys and mask SDPA saw (:meth:`Attention.project`, the same code) and keeps
an :class:`AttentionRecord`: the weights the layer applies to the values (its
:meth:`Attention.attention_map`: softmax probabilities, or a sigmoid or
differential map, whose rows are no distribution), the largest pre-softmax logit per
query (Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer
training instabilities": its growth precedes entropy collapse) and how many keys each
query may attend to (uniform attention has entropy ``log keys``). The layer's output
still comes from SDPA; recording costs one more q/k projection per recorded forward.
A record of a stack with attention-sink positions (``model.sink_tokens``) keeps them,
and says how many lead the queries and the keys (the layer's ``AttnInputs``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from bench.model.attention import Attention


@dataclass(frozen=True)
class AttentionRecord:
    """One layer's attention during one forward (detached, float32)."""

    probs: Tensor  # [B, H', T, S]: the map (H' = H/2 for differential attention)
    logit_max: Tensor  # [B, H, T]: largest |q.k| x scale over the keys a query may see
    keys: Tensor  # [B | 1, H | 1, T]: how many keys each query may attend to
    distribution: bool = True  # each row of probs is >= 0 and sums to 1 (entropy applies)
    sink_queries: int = 0  # leading query positions that are attention sinks (model.sink_tokens)
    sink_keys: int = 0  # leading key positions that are attention sinks

    def without_sink_queries(self) -> AttentionRecord:
        """The record of the token queries only: the sink queries' rows left out (their
        outputs are dropped by the model); the sink keys stay."""
        q = self.sink_queries
        if not q:
            return self
        return replace(
            self,
            probs=self.probs[:, :, q:],
            logit_max=self.logit_max[..., q:],
            keys=self.keys[..., q:],
            sink_queries=0,
        )


@torch.no_grad()
def attention_record(
    q: Tensor,
    k: Tensor,
    mask: Tensor | None,
    is_causal: bool,
    scale: float | None = None,
    layer: Attention | None = None,
    sink_queries: int = 0,
    sink_keys: int = 0,
) -> AttentionRecord:
    """Softmax of the scores SDPA sees for ``q [B, H, T, hd]`` and ``k [B, KV, S, hd]``
    (no dropout), in float32; the logit maximum leaves positional biases out (the
    logit the q/k weights make). ``scale`` is the layer's (None: ``1/sqrt(hd)``, SDPA's).
    With ``layer`` the map is the layer's own :meth:`Attention.attention_map` (in
    float32), whatever its kind. ``sink_queries`` and ``sink_keys`` are recorded as given."""
    k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
    logits = q.float() @ k.float().transpose(-2, -1)
    logits = logits / math.sqrt(q.shape[-1]) if scale is None else logits * scale
    if mask is not None:
        scores = logits + mask.float()
        hidden = torch.isneginf(scores)
    elif is_causal:
        t, s = logits.shape[-2:]
        hidden = torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1)
        scores = logits.masked_fill(hidden, float("-inf"))
    else:
        scores, hidden = logits, None
    size = logits.abs()
    if hidden is None:
        keys = torch.full((1, 1, logits.shape[-2]), logits.shape[-1], device=q.device)
    else:
        size = size.masked_fill(hidden, 0.0)
        keys = (~hidden).sum(-1)
        keys = keys.view((1,) * (3 - keys.ndim) + tuple(keys.shape))  # [B | 1, H | 1, T]
    if layer is None or type(layer).attention_map is Attention.attention_map:
        return AttentionRecord(
            scores.softmax(dim=-1),
            size.amax(dim=-1),
            keys,
            sink_queries=sink_queries,
            sink_keys=sink_keys,
        )
    qf, kf, mf = q.float(), k.float(), None if mask is None else mask.float()
    probs = layer.attention_map(qf, kf, mf, is_causal).float()
    return AttentionRecord(
        probs, size.amax(dim=-1), keys, layer.map_is_distribution, sink_queries, sink_keys
    )


def attention_modules(model: nn.Module) -> list[tuple[str, Attention]]:
    """``(module path, layer)`` of every attention layer of ``model``, in model order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, Attention)]


class AttentionRecorder:
    """Records each given layer's last forward while the ``with`` block runs.

    ``records[name]`` is the layer's :class:`AttentionRecord` once it has run; the
    hooks are removed on exit, so the model is as it was.
    """

    def __init__(self, layers: Mapping[str, Attention]) -> None:
        self.layers = dict(layers)
        self.records: dict[str, AttentionRecord] = {}
        self._handles: list[RemovableHandle] = []

    def __enter__(self) -> AttentionRecorder:
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._hook(name), with_kwargs=True))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _hook(self, name: str) -> Any:
        def hook(
            layer: Attention, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
        ) -> None:
            x, inputs, memory = _forward_args(args, kwargs)
            with torch.no_grad():
                q, k, _, mask = layer.project(x, inputs, memory)
            self.records[name] = attention_record(
                q,
                k,
                mask,
                inputs.is_causal,
                layer.scale,
                layer,
                sink_queries=inputs.sink_queries,
                sink_keys=inputs.sink_keys,
            )

        return hook


def _forward_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """``(x, inputs, memory)`` of a call of :meth:`Attention.forward`."""
    names = ("x", "inputs", "memory")
    values = [*args, *(kwargs.get(n) for n in names[len(args) :])]
    return values[0], values[1], values[2] if len(values) > 2 else None

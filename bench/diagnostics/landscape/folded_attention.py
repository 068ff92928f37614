"""Attention inside a ``vmap``-ed loss without the math kernel: fold the chunk into the batch.

Under ``torch.func.vmap`` the fused SDPA kernels have no batching rule, so a
vmap-ed forward needs the math kernel (:mod:`bench.diagnostics.context`), which
runs as a dozen batched elementwise ops and on CPU, for a landscape chunk, costs
about as much as every matrix product of the model together (issue 15's
profile). A chunk of ``K`` grid points is only a larger batch to attention, so
:class:`FoldedAttention` (a ``torch.overrides.TorchFunctionMode``) sends
``F.scaled_dot_product_attention`` to :func:`sdpa`, a ``torch.library`` custom
op whose vmap rule (``register_vmap``) moves the vmap dimension into the batch
dimension, ``[K, B, H, T, d] -> [K*B, H, T, d]``, and calls SDPA once with
whichever kernel torch picks for that shape (fused where it applies). Each
example's attention is the one it gets outside vmap, so a chunk matches the
per-point loop. For evaluation only: no autograd formula, dropout passed through.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode


@torch.library.custom_op("bench::folded_sdpa", mutates_args=())
def sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
) -> Tensor:
    """``F.scaled_dot_product_attention`` without dropout, as an op with a vmap rule."""
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale, enable_gqa=enable_gqa
    )


@sdpa.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, *args: Any) -> Tensor:
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


def _to_front(t: Tensor, dim: int | None, n: int) -> Tensor:
    return t.movedim(dim, 0) if dim is not None else t.expand(n, *t.shape)


def _fold(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0] * t.shape[1], *t.shape[2:])


def _fold_mask(mask: Tensor, batch: int) -> Tensor:
    """A per-point mask ``[K, *broadcastable to (B, H, T, S)]`` -> ``[K*B, H|1, T, S]``."""
    while mask.dim() < 5:
        mask = mask.unsqueeze(1)
    return _fold(mask.expand(mask.shape[0], batch, *mask.shape[2:]))


def _sdpa_vmap(
    info: Any,
    in_dims: tuple[int | None, ...],
    q: Tensor,
    k: Tensor,
    v: Tensor,
    attn_mask: Tensor | None,
    is_causal: bool,
    scale: float | None,
    enable_gqa: bool,
) -> tuple[Tensor, int]:
    n = info.batch_size
    q, k, v = (_to_front(t, d, n) for t, d in zip((q, k, v), in_dims[:3], strict=True))
    batch = q.shape[1]
    if attn_mask is not None and in_dims[3] is not None:
        attn_mask = _fold_mask(_to_front(attn_mask, in_dims[3], n), batch)
    out = sdpa(_fold(q), _fold(k), _fold(v), attn_mask, is_causal, scale, enable_gqa)
    return out.reshape(n, batch, *out.shape[1:]), 0


sdpa.register_vmap(_sdpa_vmap)


def _sdpa_args(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> tuple[tuple[Any, ...], float]:
    return (query, key, value, attn_mask, is_causal, scale, enable_gqa), dropout_p


class FoldedAttention(TorchFunctionMode):
    """While active, dropout-free ``F.scaled_dot_product_attention`` calls go to :func:`sdpa`."""

    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            sdpa_args, dropout_p = _sdpa_args(*args, **kwargs)
            if dropout_p == 0.0:
                return sdpa(*sdpa_args)
        return func(*args, **kwargs)

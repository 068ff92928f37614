"""Multi-head / grouped-query / multi-query attention on ``scaled_dot_product_attention``.

Masks, positional biases and rotations are built once per forward by the stack
(:func:`attention_inputs`) and shared by every layer: causal + padding + bias
(+ a sliding window) travel together as one float ``attn_mask``; with neither
padding nor bias nor a window shorter than the sequence a causal layer takes
SDPA's ``is_causal`` fast path.

:class:`Attention` is softmax attention and the base of the other kinds of
``model.attention`` (:mod:`bench.model.attention_kinds`): a kind keeps the
projections and :meth:`Attention.project` and overrides what happens between
them and the output projection (:meth:`Attention.attend`, :meth:`Attention.merge`)
and the map it applies to the values (:meth:`Attention.attention_map`, what the
attention diagnostics record).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.norms import norm_for
from bench.model.positional import Rotary


@dataclass(frozen=True)
class AttnInputs:
    """What every attention layer of a stack shares during one forward."""

    mask: Tensor | None = None  # float additive mask, broadcastable to [B, H, T, S]
    is_causal: bool = False  # SDPA's fast causal path (only when mask is None)
    rotary: Rotary | None = None  # rotates q and k (self-attention with rope)
    # Leading positions that are attention sinks (model.sink_tokens, bench.model.sink):
    # among the queries (their outputs are dropped) and among the keys (seen by every query)
    sink_queries: int = 0
    sink_keys: int = 0


def attention_inputs(
    t_q: int,
    t_k: int,
    *,
    causal: bool,
    device: torch.device,
    key_pad: Tensor | None = None,
    bias: Tensor | None = None,
    rotary: Rotary | None = None,
    window: int | None = None,
    sink_queries: int = 0,
    sink_keys: int = 0,
) -> AttnInputs:
    """Combine causality, key padding (``[B, S]``, True = pad), a bias ``[H, T, S]`` and a
    sliding window (query ``t`` sees keys ``s`` with ``|t - s| < window``: the last
    ``window`` keys under causality; Beltagy et al. 2020, "Longformer", Sec. 3.1;
    Child et al. 2019's local attention). A window that covers the whole sequence is no
    window (and keeps the fast path). The first ``sink_keys`` keys are attention sinks
    (:mod:`bench.model.sink`): the window does not hide them, causality still applies;
    ``sink_queries`` only travels along, for the diagnostics."""
    if key_pad is not None and key_pad.device.type != "meta" and not bool(key_pad.any()):
        key_pad = None  # a batch without padding keeps the fast path (costs one host sync)
    # (A meta tensor, as the FLOP counter traces, has no values: it keeps the padding
    # path, whose matmuls are the same.)
    if window is not None and window >= max(t_q, t_k):
        window = None
    if key_pad is None and bias is None and window is None:
        return AttnInputs(None, causal, rotary, sink_queries, sink_keys)
    allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril()
    if window is not None:
        near = torch.ones_like(allowed).triu(-(window - 1)).tril(window - 1)
        near[:, :sink_keys] = True  # sinks stay visible beside the window
        allowed = allowed & near
    allowed = allowed[None, None]  # [1, 1, T, S]
    if key_pad is not None:
        allowed = allowed & ~key_pad.to(device=device, dtype=torch.bool)[:, None, None, :]
        # A query that sees no key (all padding) would get NaN from softmax; let it
        # see every key instead. It is itself padding, and no real query reads it.
        allowed = allowed | ~allowed.any(-1, keepdim=True)
    mask = torch.zeros(allowed.shape, device=device).masked_fill_(~allowed, float("-inf"))
    if bias is not None:
        mask = mask + bias  # [B|1, H, T, S]
    return AttnInputs(mask, False, rotary, sink_queries, sink_keys)


class Attention(nn.Module):
    """Self- or cross-attention with ``n_heads`` query heads sharing ``n_kv_heads`` K/V heads.

    Softmax attention (Vaswani et al. 2017, "Attention Is All You Need", Eq. 1;
    grouped K/V heads: Ainslie et al. 2023, GQA). Self-attention uses one fused
    q/k/v projection; cross-attention a query projection and a fused k/v projection
    of the encoder memory. The layer only computes: :meth:`project` gives the
    queries, keys, values and mask SDPA sees, and :meth:`attention_map` the weights
    they make, which is what a diagnostic that reads attention recomputes
    (:mod:`bench.diagnostics.attention.recorder`, through a forward hook).
    ``scale`` multiplies the scores ``q.k`` (None: SDPA's ``1/sqrt(d_head)``; µP's
    ``sqrt(base d_head)/d_head``, :mod:`bench.model.parameterization`). ``layer`` is
    the block's 0-based depth in its stack (read by kinds whose constants depend on
    it, :class:`bench.model.diff_attention.DiffAttention`).

    Class attributes a kind sets: ``kind`` (its ``model.attention`` name),
    ``map_is_distribution`` (each query's weights are >= 0 and sum to 1, so an entropy
    and a probability colour scale apply), ``uses_sdpa`` (the weighted sum runs in
    ``scaled_dot_product_attention``; :mod:`bench.model.sdpa_kernels` predicts its
    kernel), ``value_dim_factor`` (SDPA's value head width over ``head_dim``) and
    ``score_flops_factor`` (the forward FLOPs of scores and weighted values over
    softmax attention's ``4 T S d``; :mod:`bench.diagnostics.throughput.flops`).
    """

    kind = "softmax"
    map_is_distribution = True
    uses_sdpa = True
    value_dim_factor = 1
    score_flops_factor = 1.0

    def __init__(
        self, cfg: ModelConfig, cross: bool = False, scale: float | None = None, layer: int = 0
    ) -> None:
        super().__init__()
        self.scale = scale
        self.layer = layer
        d, self.n_heads, self.n_kv, self.head_dim = (
            cfg.d_model,
            cfg.n_heads,
            cfg.kv_heads,
            cfg.head_dim,
        )
        q_dim, kv_dim = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        self.cross = cross
        if cross:
            self.q_proj = nn.Linear(d, q_dim, bias=cfg.bias)
            self.kv_proj = nn.Linear(d, 2 * kv_dim, bias=cfg.bias)
        else:
            self.qkv = nn.Linear(d, q_dim + 2 * kv_dim, bias=cfg.bias)
        self.out = nn.Linear(q_dim, d, bias=cfg.bias)
        self.q_norm = norm_for(cfg, self.head_dim) if cfg.qk_norm else None
        self.k_norm = norm_for(cfg, self.head_dim) if cfg.qk_norm else None
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def weight_blocks(self) -> list[tuple[str, nn.Linear, slice]]:
        """``(role, linear, rows)`` of each logical projection; roles: q, k, v, out (and a
        kind's own, e.g. gate)."""
        q_dim, kv_dim = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        if self.cross:
            qkv = [
                ("q", self.q_proj, slice(0, q_dim)),
                ("k", self.kv_proj, slice(0, kv_dim)),
                ("v", self.kv_proj, slice(kv_dim, 2 * kv_dim)),
            ]
        else:
            qkv = [
                ("q", self.qkv, slice(0, q_dim)),
                ("k", self.qkv, slice(q_dim, q_dim + kv_dim)),
                ("v", self.qkv, slice(q_dim + kv_dim, q_dim + 2 * kv_dim)),
            ]
        return [*qkv, ("out", self.out, slice(0, self.out.out_features))]

    def project(
        self, x: Tensor, inputs: AttnInputs, memory: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """``(q [B, H, T, hd], k [B, KV, S, hd], v [B, KV, S, hd], mask)`` as SDPA gets them:
        normalized (QK-norm) and rotated (RoPE) queries and keys, the additive mask."""
        B, T, _ = x.shape
        H, KV, hd = self.n_heads, self.n_kv, self.head_dim
        if self.cross:
            assert memory is not None, "cross-attention needs the encoder memory"
            S = memory.shape[1]
            q = self.q_proj(x)
            k, v = self.kv_proj(memory).chunk(2, dim=-1)
        else:
            S = T
            q, k, v = self.qkv(x).split([H * hd, KV * hd, KV * hd], dim=-1)
        q = q.view(B, T, H, hd).transpose(1, 2)
        k = k.view(B, S, KV, hd).transpose(1, 2)
        v = v.view(B, S, KV, hd).transpose(1, 2)
        if self.q_norm is not None and self.k_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if inputs.rotary is not None:
            q, k = inputs.rotary(q), inputs.rotary(k)
        q, k = q.to(v.dtype), k.to(v.dtype)  # norms/rotation may upcast under autocast
        mask = inputs.mask.to(q.dtype) if inputs.mask is not None else None
        return q, k, v, mask

    def scores(self, q: Tensor, k: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        """``q.k x scale`` plus the mask (``-inf`` where a key is hidden), ``[B, H, T, S]``,
        in the inputs' dtype: what softmax (or a kind's other map) is applied to."""
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        scale = q.shape[-1] ** -0.5 if self.scale is None else self.scale
        logits = (q @ k.transpose(-2, -1)) * scale
        if mask is not None:
            return logits + mask
        if is_causal:
            t, s = logits.shape[-2:]
            hidden = torch.ones(t, s, dtype=torch.bool, device=q.device).triu(1)
            return logits.masked_fill(hidden, float("-inf"))
        return logits

    def attention_map(self, q: Tensor, k: Tensor, mask: Tensor | None, is_causal: bool) -> Tensor:
        """The weights ``[B, H', T, S]`` the values are summed with (no dropout): here
        ``softmax(q.k x scale + mask)``. A kind with another map overrides it."""
        return self.scores(q, k, mask, is_causal).softmax(dim=-1)

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, is_causal: bool
    ) -> Tensor:
        """Each head's weighted sum of the values, ``[B, H', T, dv]``: SDPA here."""
        return F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
            scale=self.scale,
            enable_gqa=self.n_kv != self.n_heads,
        )

    def merge(self, y: Tensor, x: Tensor) -> Tensor:
        """The heads ``y [B, H', T, dv]`` side by side, ``[B, T, H' dv]``, for the output
        projection; ``x`` is the layer's input (a gate reads it)."""
        B, H, T, dv = y.shape
        return y.transpose(1, 2).reshape(B, T, H * dv)

    def forward(self, x: Tensor, inputs: AttnInputs, memory: Tensor | None = None) -> Tensor:
        """``x [B, T, D]`` attends to itself, or to ``memory [B, S, D]`` in cross-attention."""
        q, k, v, mask = self.project(x, inputs, memory)
        y = self.attend(q, k, v, mask, inputs.is_causal)
        return self.resid_drop(self.out(self.merge(y, x)))

"""Multi-head / grouped-query / multi-query attention on ``scaled_dot_product_attention``.

Masks, positional biases and rotations are built once per forward by the stack
(:func:`attention_inputs`) and shared by every layer: causal + padding + bias
travel together as one float ``attn_mask``; with neither padding nor bias a
causal layer takes SDPA's ``is_causal`` fast path.
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


def attention_inputs(
    t_q: int,
    t_k: int,
    *,
    causal: bool,
    device: torch.device,
    key_pad: Tensor | None = None,
    bias: Tensor | None = None,
    rotary: Rotary | None = None,
) -> AttnInputs:
    """Combine causality, key padding (``[B, S]``, True = pad) and a bias ``[H, T, S]``."""
    if key_pad is not None and key_pad.device.type != "meta" and not bool(key_pad.any()):
        key_pad = None  # a batch without padding keeps the fast path (costs one host sync)
    # (A meta tensor, as the FLOP counter traces, has no values: it keeps the padding
    # path, whose matmuls are the same.)
    if key_pad is None and bias is None:
        return AttnInputs(None, causal, rotary)
    allowed = torch.ones(t_q, t_k, dtype=torch.bool, device=device)
    if causal:
        allowed = allowed.tril()
    allowed = allowed[None, None]  # [1, 1, T, S]
    if key_pad is not None:
        allowed = allowed & ~key_pad.to(device=device, dtype=torch.bool)[:, None, None, :]
        # A query that sees no key (all padding) would get NaN from softmax; let it
        # see every key instead. It is itself padding, and no real query reads it.
        allowed = allowed | ~allowed.any(-1, keepdim=True)
    mask = torch.zeros(allowed.shape, device=device).masked_fill_(~allowed, float("-inf"))
    if bias is not None:
        mask = mask + bias  # [B|1, H, T, S]
    return AttnInputs(mask, False, rotary)


class Attention(nn.Module):
    """Self- or cross-attention with ``n_heads`` query heads sharing ``n_kv_heads`` K/V heads.

    Self-attention uses one fused q/k/v projection; cross-attention a query
    projection and a fused k/v projection of the encoder memory. The layer only
    computes: :meth:`project` gives the queries, keys, values and mask SDPA sees,
    which is what a diagnostic that reads attention probabilities recomputes
    (:mod:`bench.diagnostics.attention.recorder`, through a forward hook).
    ``scale`` multiplies the scores ``q.k`` (None: SDPA's ``1/sqrt(d_head)``; µP's
    ``sqrt(base d_head)/d_head``, :mod:`bench.model.parameterization`).
    """

    def __init__(self, cfg: ModelConfig, cross: bool = False, scale: float | None = None) -> None:
        super().__init__()
        self.scale = scale
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
        """``(role, linear, rows)`` of each logical projection; roles: q, k, v, out."""
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

    def forward(self, x: Tensor, inputs: AttnInputs, memory: Tensor | None = None) -> Tensor:
        """``x [B, T, D]`` attends to itself, or to ``memory [B, S, D]`` in cross-attention."""
        q, k, v, mask = self.project(x, inputs, memory)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=inputs.is_causal,
            scale=self.scale,
            enable_gqa=self.n_kv != self.n_heads,
        )
        B, H, T, hd = y.shape
        return self.resid_drop(self.out(y.transpose(1, 2).reshape(B, T, H * hd)))

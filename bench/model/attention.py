"""Multi-head / grouped-query / multi-query attention on ``scaled_dot_product_attention``.

Masks, positional biases and rotations are built once per forward by the stack
(:func:`attention_inputs`) and shared by every layer: causal + padding + bias
travel together as one float ``attn_mask``; with neither padding nor bias a
causal layer takes SDPA's ``is_causal`` fast path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.norms import make_norm
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
    projection and a fused k/v projection of the encoder memory. Set
    ``record_probs = True`` to also store the attention probabilities
    ``[B, H, T, S]`` (detached) in ``last_probs`` and the largest pre-softmax
    logit ``|q.k|/sqrt(d_head)`` each query gives an allowed key, ``[B, H, T]``, in
    ``last_logit_max`` (Wortsman et al. 2023, "Small-scale proxies for large-scale
    Transformer training instabilities": its growth precedes entropy collapse)
    and the number of keys each query may attend to, ``[B | 1, H | 1, T]``, in
    ``last_keys`` (uniform attention has entropy ``log last_keys``); the output
    still comes from SDPA.
    """

    def __init__(self, cfg: ModelConfig, cross: bool = False) -> None:
        super().__init__()
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
        self.q_norm = make_norm(cfg.norm_type, self.head_dim, cfg.bias) if cfg.qk_norm else None
        self.k_norm = make_norm(cfg.norm_type, self.head_dim, cfg.bias) if cfg.qk_norm else None
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)
        self.record_probs = False
        self.last_probs: Tensor | None = None
        self.last_logit_max: Tensor | None = None
        self.last_keys: Tensor | None = None

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

    def forward(self, x: Tensor, inputs: AttnInputs, memory: Tensor | None = None) -> Tensor:
        """``x [B, T, D]`` attends to itself, or to ``memory [B, S, D]`` in cross-attention."""
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
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=inputs.is_causal,
            enable_gqa=KV != H,
        )
        if self.record_probs:
            self.last_probs, self.last_logit_max, self.last_keys = self._probs(
                q, k, mask, inputs.is_causal
            )
        y = y.transpose(1, 2).reshape(B, T, H * hd)
        return self.resid_drop(self.out(y))

    @torch.no_grad()
    def _probs(
        self, q: Tensor, k: Tensor, mask: Tensor | None, is_causal: bool
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Softmax of the same scores SDPA sees (no dropout), in float32, the largest
        ``|q.k|/sqrt(d)`` per query over the keys it may attend to (positional biases
        left out: the logit the q/k weights make) and how many keys that is."""
        k = k.repeat_interleave(self.n_heads // self.n_kv, dim=1)
        logits = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(self.head_dim)
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
        return scores.softmax(dim=-1), size.amax(dim=-1), keys

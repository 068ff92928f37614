"""Learnable attention-sink tokens (``model.sink_tokens``).

Xiao, Tian, Chen, Han, Lewis 2023, "Efficient Streaming Language Models with Attention
Sinks" (ICLR 2024, arXiv 2309.17453), Sec. 3.3 and 4.2: "a learnable placeholder token
(Sink Token)" prepended to every training sample gives attention one fixed place to put
the mass no key needs, which trained language models otherwise put on the first tokens
whatever they are (Sec. 3.1). The paper uses one; ``model.sink_tokens = k`` gives ``k``.

Where they are: each causal stack (a decoder-only model, the decoder of an
encoder-decoder) gets ``k`` learned vectors, the rows of an ``nn.Embedding(k, d_model)``
(:class:`SinkTokens`) in the token embeddings' space: the model's embedding scale is
applied to them as to a token, and every init scheme and µP treat the table as they treat
the token table. :func:`prepend` puts them before every sequence, before the positions
are added, so they take positions ``0..k-1`` and the tokens ``k..k+T-1`` under every
positional encoding: the stack computes exactly what it would for a vocabulary with
``k`` more ids prepended to every sequence. Every query sees them: causality does, and a
sliding window (``model.attn_window``) keeps them visible beside the window, as the
paper's cache keeps its sinks beside the rolling window (Sec. 3.2). Their hidden states
are dropped before the head (:func:`drop`): no logits, no loss. The encoder gets none:
its attention is bidirectional, and the paper's reason for a sink (the first token is
seen by every later one) is a causal one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from bench.config import ModelConfig


def sink_count(cfg: ModelConfig, causal: bool) -> int:
    """The sink positions a stack puts before every sequence: ``model.sink_tokens`` for a
    causal stack, none for an encoder."""
    return cfg.sink_tokens if causal else 0


class SinkTokens(nn.Module):
    """``model.sink_tokens`` learned input vectors of one causal stack (see the module
    docstring); ``embed.weight`` is ``[k, d_model]``, initialized like token embeddings."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.sink_tokens, cfg.d_model)

    @property
    def count(self) -> int:
        return self.embed.num_embeddings

    def forward(self, scale: Callable[[Tensor], Tensor]) -> Tensor:
        """The sink inputs ``[k, D]``: each vector through the token embeddings' ``scale``."""
        return scale(self.embed.weight)


def prepend(x: Tensor, sinks: Tensor, pad: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """``sinks [k, D]`` before every sequence of ``x [B, T, D]`` -> ``[B, k + T, D]``; the
    padding mask ``[B, T]`` (True at padding) gets ``k`` real positions in front."""
    k, b = sinks.shape[0], x.shape[0]
    x = torch.cat([sinks.to(x.dtype)[None].expand(b, k, -1), x], dim=1)
    if pad is not None:
        pad = torch.cat([pad.new_zeros(b, k), pad], dim=1)
    return x, pad


def drop(h: Tensor, k: int) -> Tensor:
    """Hidden states ``[B, k + T, D]`` without the ``k`` sink positions: ``[B, T, D]``."""
    return h[:, k:] if k else h

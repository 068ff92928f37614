"""One residual block (self-attention, optional cross-attention, FFN) and the placements' registry.

The block is the same code for every placement (:mod:`bench.model.placement`,
:mod:`bench.model.deepnorm`), for encoder and decoder layers alike. With
``model.block=parallel`` (GPT-J, PaLM) attention and FFN read one shared norm of the
same input and both outputs are added to it (:class:`~bench.model.placement.ParallelNorm`).
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.attention import Attention, AttnInputs
from bench.model.attention_kinds import make_attention
from bench.model.deepnorm import DeepNorm
from bench.model.feedforward import FEEDFORWARDS, FeedForward
from bench.model.placement import (
    MixLN,
    ParallelNorm,
    Placement,
    PostNorm,
    PreNorm,
    SandwichNorm,
)

PLACEMENTS: dict[str, type[Placement]] = {
    "post": PostNorm,
    "pre": PreNorm,
    "sandwich": SandwichNorm,
    "deepnorm": DeepNorm,
    "peri": SandwichNorm,  # Peri-LN (Kim et al. 2025) is sandwich-LN: an alias, one class
    "mixln": MixLN,
}


class Block(nn.Module):
    """Self-attention, optional cross-attention (decoder of an encoder-decoder), FFN.

    ``attn_res``, ``cross_res`` and ``ffn_res`` hold each sublayer's norm(s) and
    residual rule; ``alpha`` is the deepnorm residual scale (ignored elsewhere);
    ``attn_scale`` multiplies every attention's scores (None: ``1/sqrt(d_head)``).
    ``layer`` of ``n_layers`` is the block's 0-based depth in its stack (Mix-LN's placement
    and the ``model.attention`` kinds read it). ``parallel_res`` (``model.block=parallel``)
    replaces ``attn_res`` and ``ffn_res``, which are then None.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        cross: bool = False,
        alpha: float = 1.0,
        attn_scale: float | None = None,
        layer: int = 0,
        n_layers: int = 1,
    ) -> None:
        super().__init__()
        placement = PLACEMENTS[cfg.norm_placement].for_layer(cfg, layer, n_layers)
        parallel = cfg.block == "parallel"
        self.attn = make_attention(cfg, scale=attn_scale, layer=layer)
        self.parallel_res = ParallelNorm(cfg) if parallel else None
        self.attn_res = None if parallel else placement(cfg, alpha)
        self.cross_attn = (
            make_attention(cfg, cross=True, scale=attn_scale, layer=layer) if cross else None
        )
        self.cross_res = placement(cfg, alpha) if cross else None
        self.ffn = FEEDFORWARDS[cfg.ffn](cfg)
        self.ffn_res = None if parallel else placement(cfg, alpha)

    def sublayers(self) -> Iterator[Attention | FeedForward]:
        """Self-attention, cross-attention (if any) and the FFN, in that order."""
        yield self.attn
        if self.cross_attn is not None:
            yield self.cross_attn
        yield self.ffn

    def forward(
        self,
        x: Tensor,
        inputs: AttnInputs,
        memory: Tensor | None = None,
        memory_inputs: AttnInputs | None = None,
    ) -> Tensor:
        """``x [B, T, D]``; ``memory [B, S, D]`` and its ``memory_inputs`` for cross-attention."""
        if self.parallel_res is not None:  # decoder-only (ModelConfig refuses cross)
            return self.parallel_res(x, lambda h: self.attn(h, inputs), self.ffn)
        assert self.attn_res is not None and self.ffn_res is not None
        x = self.attn_res(x, lambda h: self.attn(h, inputs))
        if self.cross_attn is not None and self.cross_res is not None:
            mem_in = memory_inputs or AttnInputs()
            x = self.cross_res(x, lambda h: self.cross_attn(h, mem_in, memory))
        return self.ffn_res(x, self.ffn)

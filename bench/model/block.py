"""One residual block, and where its norms go (post, pre, sandwich, deepnorm).

A placement wraps one sublayer ``f`` (attention, cross-attention or the FFN)
with its norm(s) and residual connection; the block is the same code for every
placement, for encoder and decoder layers alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.attention import Attention, AttnInputs
from bench.model.feedforward import FEEDFORWARDS
from bench.model.norms import make_norm

Sublayer = Callable[[Tensor], Tensor]


class Placement(nn.Module):
    """A residual connection around one sublayer, with its norm(s)."""

    final_norm: ClassVar[bool] = False  # does the stack need a norm after its last block?

    def __init__(self, cfg: ModelConfig, alpha: float = 1.0) -> None:
        super().__init__()
        self.norm = make_norm(cfg.norm_type, cfg.d_model, cfg.bias)


class PostNorm(Placement):
    """Vaswani et al. 2017: ``x = N(x + f(x))``."""

    def forward(self, x: Tensor, f: Sublayer) -> Tensor:
        return self.norm(x + f(x))


class PreNorm(Placement):
    """Xiong et al. 2020 / GPT-2: ``x = x + f(N(x))``, and a final norm after the stack."""

    final_norm = True

    def forward(self, x: Tensor, f: Sublayer) -> Tensor:
        return x + f(self.norm(x))


class SandwichNorm(Placement):
    """Ding et al. 2021 (CogView): ``x = x + N2(f(N1(x)))``, and a final norm."""

    final_norm = True

    def __init__(self, cfg: ModelConfig, alpha: float = 1.0) -> None:
        super().__init__(cfg, alpha)
        self.norm_out = make_norm(cfg.norm_type, cfg.d_model, cfg.bias)

    def forward(self, x: Tensor, f: Sublayer) -> Tensor:
        return x + self.norm_out(f(self.norm(x)))


class DeepNorm(Placement):
    """Wang et al. 2022 (DeepNet): ``x = N(alpha * x + f(x))`` (see ``deepnorm_constants``)."""

    def __init__(self, cfg: ModelConfig, alpha: float = 1.0) -> None:
        super().__init__(cfg, alpha)
        self.alpha = alpha

    def forward(self, x: Tensor, f: Sublayer) -> Tensor:
        return self.norm(self.alpha * x + f(x))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:.4f}"


PLACEMENTS: dict[str, type[Placement]] = {
    "post": PostNorm,
    "pre": PreNorm,
    "sandwich": SandwichNorm,
    "deepnorm": DeepNorm,
}


class Block(nn.Module):
    """Self-attention, optional cross-attention (decoder of an encoder-decoder), FFN.

    ``attn_res``, ``cross_res`` and ``ffn_res`` hold each sublayer's norm(s) and
    residual rule; ``alpha`` is the deepnorm residual scale (ignored elsewhere).
    """

    def __init__(self, cfg: ModelConfig, cross: bool = False, alpha: float = 1.0) -> None:
        super().__init__()
        placement = PLACEMENTS[cfg.norm_placement]
        self.attn = Attention(cfg)
        self.attn_res = placement(cfg, alpha)
        self.cross_attn = Attention(cfg, cross=True) if cross else None
        self.cross_res = placement(cfg, alpha) if cross else None
        self.ffn = FEEDFORWARDS[cfg.ffn](cfg)
        self.ffn_res = placement(cfg, alpha)

    def forward(
        self,
        x: Tensor,
        inputs: AttnInputs,
        memory: Tensor | None = None,
        memory_inputs: AttnInputs | None = None,
    ) -> Tensor:
        """``x [B, T, D]``; ``memory [B, S, D]`` and its ``memory_inputs`` for cross-attention."""
        x = self.attn_res(x, lambda h: self.attn(h, inputs))
        if self.cross_attn is not None and self.cross_res is not None:
            mem_in = memory_inputs or AttnInputs()
            x = self.cross_res(x, lambda h: self.cross_attn(h, mem_in, memory))
        return self.ffn_res(x, self.ffn)

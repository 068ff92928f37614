"""Where a residual block's norms go: the :class:`Placement` interface, post, pre and sandwich.

A placement wraps one sublayer ``f`` (attention, cross-attention or the FFN)
with its norm(s) and residual connection, and says whether its stack needs a
final norm. DeepNorm, the fourth, lives with its constants in
:mod:`bench.model.deepnorm`; the registry of all four is ``PLACEMENTS`` in
:mod:`bench.model.block`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.norms import make_norm

Sublayer = Callable[[Tensor], Tensor]


class Placement(nn.Module):
    """A residual connection around one sublayer, with its norm(s).

    ``alpha`` is the residual scale of :class:`~bench.model.deepnorm.DeepNorm`;
    the other placements ignore it.
    """

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

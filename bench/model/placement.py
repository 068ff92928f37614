"""Where a residual block's norms go: the :class:`Placement` interface, post, pre,
sandwich (= Peri-LN), Mix-LN, and the parallel block's one shared norm.

A placement wraps one sublayer ``f`` (attention, cross-attention or the FFN)
with its norm(s) and residual connection, and says whether its stack needs a
final norm. A placement may differ by depth (:meth:`Placement.for_layer`: Mix-LN).
DeepNorm lives with its constants in :mod:`bench.model.deepnorm`; the registry of
all of them is ``PLACEMENTS`` in :mod:`bench.model.block`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import ClassVar

from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.norms import norm_for

Sublayer = Callable[[Tensor], Tensor]


class Placement(nn.Module):
    """A residual connection around one sublayer, with its norm(s).

    ``alpha`` is the residual scale of :class:`~bench.model.deepnorm.DeepNorm`;
    the other placements ignore it.
    """

    final_norm: ClassVar[bool] = False  # does the stack need a norm after its last block?

    def __init__(self, cfg: ModelConfig, alpha: float = 1.0) -> None:
        super().__init__()
        self.norm = norm_for(cfg)

    @classmethod
    def for_layer(cls, cfg: ModelConfig, layer: int, n_layers: int) -> type[Placement]:
        """The placement block ``layer`` (0-based) of a stack of ``n_layers`` gets: this
        one at every depth, except for placements that change with depth (Mix-LN)."""
        return cls


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
    """Ding et al. 2021 (CogView): ``x = x + N2(f(N1(x)))``, and a final norm.

    Also registered as ``peri``: Peri-LN (Kim et al. 2025, "Peri-LN: Revisiting Normalization
    Layer in the Transformer Architecture", ICML 2025, arXiv 2502.02732) is this same rule,
    ``y = x + Norm(F(Norm(x)))`` around every sublayer, with a final norm. Its optional
    norm of the embedding layer's output is ``model.embed_scale=norm`` (the ``peri-ln``
    preset sets it).
    """

    final_norm = True

    def __init__(self, cfg: ModelConfig, alpha: float = 1.0) -> None:
        super().__init__(cfg, alpha)
        self.norm_out = norm_for(cfg)

    def forward(self, x: Tensor, f: Sublayer) -> Tensor:
        return x + self.norm_out(f(self.norm(x)))


class MixLN(Placement):
    """Mix-LN (Li, Yin, Liu 2024, "Mix-LN: Unleashing the Power of Deeper Layers by
    Combining Pre-LN and Post-LN", ICLR 2025, arXiv 2412.13795): Post-LN
    (``x = N(x + f(x))``) in the first ``floor(alpha L)`` blocks of a stack, Pre-LN
    (``x = x + f(N(x))``) in the rest, and Pre-LN's final norm; ``alpha`` is
    ``model.mixln_post_fraction`` (the paper's 0.25: 3 of 12 layers at 71M, 6 of 24 at
    1B, the authors' ``POST_NUM``). Each block is built as :class:`PostNorm` or
    :class:`PreNorm` (:meth:`for_layer`); this class only chooses. In an encoder-decoder
    each stack counts its own blocks. With fewer than ``1/alpha`` blocks no block is
    Post-LN and the model is Pre-LN.
    """

    final_norm = True

    @staticmethod
    def n_post(cfg: ModelConfig, n_layers: int) -> int:
        """How many of a stack's first blocks are Post-LN: ``floor(fraction * n_layers)``."""
        return math.floor(cfg.mixln_post_fraction * n_layers + 1e-9)

    @classmethod
    def for_layer(cls, cfg: ModelConfig, layer: int, n_layers: int) -> type[Placement]:
        return PostNorm if layer < cls.n_post(cfg, n_layers) else PreNorm


class ParallelNorm(nn.Module):
    """The parallel block's residual rule (Wang & Komatsuzaki 2021, GPT-J; Chowdhery et al.
    2022, "PaLM: Scaling Language Modeling with Pathways", Section 2): attention and FFN
    read one shared norm of the same input, ``x = x + attn(N(x)) + ffn(N(x))``. PaLM and
    GPT-J use one LayerNorm (``ln_1``) for both branches (GPT-NeoX uses two; not this).
    Pre-LN only, with the stack's final norm (``model.block=parallel``)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm = norm_for(cfg)

    def forward(self, x: Tensor, *branches: Sublayer) -> Tensor:
        h = self.norm(x)
        out = x
        for f in branches:
            out = out + f(h)
        return out

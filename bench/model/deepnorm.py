"""DeepNorm (Wang et al. 2022, "DeepNet: Scaling Transformers to 1,000 Layers"), in one place.

- **Constants** (the paper's Table 1): each stack's residual scale ``alpha`` and
  init gain ``beta``, from the layer counts (:func:`stack_constants`).
- **Placement** (:class:`DeepNorm`): post-LN with an up-weighted residual,
  ``x = LN(alpha * x + f(x))``.
- **Init** (:func:`init_deepnorm`): xavier-normal block projections with gain
  ``beta`` for the FFN, the value and the attention output, gain 1 for queries
  and keys.

Registered as the ``deepnorm`` placement (``PLACEMENTS``, :mod:`bench.model.block`)
and init (``INITS``, :mod:`bench.model.init`). The config (no torch there) knows
only that ``init: auto`` means this init under this placement
(``ModelConfig.resolved``) and that it collapses with a tied head
(``ModelConfig.init_warning``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from bench.config import ModelConfig, embedding_std
from bench.model.placement import Placement, Sublayer
from bench.model.weights import normal_all, sublayers

if TYPE_CHECKING:
    from bench.model.weights import Stacked

StackName = Literal["encoder", "decoder"]


@dataclass(frozen=True)
class DeepNormConstants:
    """One stack's ``alpha`` (residual scale) and ``beta`` (init gain)."""

    alpha: float
    beta: float


def stack_constants(cfg: ModelConfig, stack: StackName) -> DeepNormConstants:
    """Table 1: a decoder-only model of M layers has ``alpha = (2M)^(1/4)``,
    ``beta = (8M)^(-1/4)``; an encoder-decoder (N encoder, M decoder layers) has
    ``alpha = 0.81 (N^4 M)^(1/16)``, ``beta = 0.87 (N^4 M)^(-1/16)`` in the encoder and
    ``alpha = (3M)^(1/4)``, ``beta = (12M)^(-1/4)`` in the decoder."""
    m = cfg.n_layers
    if cfg.arch == "decoder":
        return DeepNormConstants((2 * m) ** 0.25, (8 * m) ** -0.25)
    if stack == "decoder":
        return DeepNormConstants((3 * m) ** 0.25, (12 * m) ** -0.25)
    n = cfg.encoder_layers
    return DeepNormConstants(0.81 * (n**4 * m) ** (1 / 16), 0.87 * (n**4 * m) ** (-1 / 16))


def deepnorm_constants(cfg: ModelConfig) -> dict[str, dict[str, float]]:
    """:func:`stack_constants` of every stack of ``cfg``: ``{"decoder": {"alpha", "beta"}}``,
    plus ``"encoder"`` for an encoder-decoder."""
    stacks: tuple[StackName, ...] = (
        ("decoder",) if cfg.arch == "decoder" else ("encoder", "decoder")
    )
    out: dict[str, dict[str, float]] = {}
    for name in stacks:
        c = stack_constants(cfg, name)
        out[name] = {"alpha": c.alpha, "beta": c.beta}
    return out


class DeepNorm(Placement):
    """``x = N(alpha * x + f(x))``, with the stack's ``alpha`` (:func:`stack_constants`)."""

    def __init__(self, cfg: ModelConfig, alpha: float = 1.0) -> None:
        super().__init__(cfg, alpha)
        self.alpha = alpha

    def forward(self, x: Tensor, f: Sublayer) -> Tensor:
        return self.norm(self.alpha * x + f(x))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:.4f}"


@torch.no_grad()
def init_deepnorm(model: Stacked) -> None:
    """Xavier-normal block projections, gain ``beta`` for the FFN, the value and the
    attention output projections, gain 1 for queries and keys (and a gated attention's
    gate, which like them is no residual path). Embeddings and the
    untied head get N(0, d_model^-1/2) as in fairseq, on which the paper's translation
    experiments run (unit RMS with the ``sqrt_d`` scale)."""
    normal_all(model, embedding_std("deepnorm", model.cfg.d_model))
    for sub, stack in sublayers(model):
        for role, linear, rows in sub.weight_blocks():
            gain = 1.0 if role in ("q", "k", "gate") else stack.deepnorm.beta
            nn.init.xavier_normal_(linear.weight[rows], gain=gain)

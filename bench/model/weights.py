"""What every init scheme walks: all linears and embeddings, and each stack's sublayers.

The schemes (:mod:`bench.model.init`, :mod:`bench.model.deepnorm`) ask the model
for its stacks (``stacks()``) and each stack for its sublayers, so they never
depend on parameter names or on probing attributes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from torch import nn

from bench.config import ModelConfig

if TYPE_CHECKING:
    from bench.model.attention import Attention
    from bench.model.feedforward import FeedForward
    from bench.model.transformer import Stack


class Stacked(Protocol):
    """A model built of stacks (:class:`~bench.model.transformer.DecoderLM`,
    :class:`~bench.model.transformer.EncoderDecoder`)."""

    cfg: ModelConfig

    def modules(self) -> Iterator[nn.Module]: ...

    def stacks(self) -> list[Stack]: ...


def normal_all(model: Stacked, std: float) -> None:
    """Every linear and embedding (token, learned positions, t5 bias table) N(0, std); zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)


def sublayers(model: Stacked) -> Iterator[tuple[Attention | FeedForward, Stack]]:
    """``(sublayer, its stack)`` for every attention / FFN of every block, stack by stack."""
    for stack in model.stacks():
        for sub in stack.sublayers():
            yield sub, stack

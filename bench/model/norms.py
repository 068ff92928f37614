"""Normalisation layers: layernorm, rmsnorm, scalenorm.

Every norm takes ``(dim, bias)`` and normalises the last dimension. They compute
in at least float32 (bf16/fp16 inputs are upcast, float64 stays float64) and
return the input dtype, so they behave the same under bf16 autocast, run in a
float64 model (reference and gradient checks), and can also normalise per-head
queries and keys (``qk_norm``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-5


def _upcast(x: Tensor) -> Tensor:
    """``x`` in float32 if it is of lower precision, else unchanged (float32, float64)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class Norm(nn.Module):
    """Base class of every norm (lets callers find norms with ``isinstance``)."""

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.dim = dim


class LayerNorm(Norm):
    """Ba et al. 2016: centre and scale, learnable gain and (optional) bias."""

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__(dim, bias)
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(_upcast(x), (self.dim,), self.weight, self.bias, EPS).type_as(x)


class RMSNorm(Norm):
    """Zhang & Sennrich 2019: scale by the root mean square, learnable gain, no bias."""

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__(dim, bias)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(_upcast(x), (self.dim,), self.weight, EPS).type_as(x)


class ScaleNorm(Norm):
    """Nguyen & Salazar 2019: ``g * x / ||x||`` with one learnable scalar ``g = sqrt(dim)``."""

    def __init__(self, dim: int, bias: bool = True) -> None:
        super().__init__(dim, bias)
        self.g = nn.Parameter(torch.tensor(math.sqrt(dim)))

    def forward(self, x: Tensor) -> Tensor:
        xf = _upcast(x)
        return (xf * (self.g / xf.norm(dim=-1, keepdim=True).clamp_min(EPS))).type_as(x)


NORMS: dict[str, type[Norm]] = {
    "layernorm": LayerNorm,
    "rmsnorm": RMSNorm,
    "scalenorm": ScaleNorm,
}


def make_norm(norm_type: str, dim: int, bias: bool = True) -> Norm:
    """The norm registered under ``norm_type`` for vectors of size ``dim``."""
    return NORMS[norm_type](dim, bias)

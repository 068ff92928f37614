"""Normalisation layers: layernorm, rmsnorm, scalenorm, and DyT, which replaces them.

Every norm takes ``(dim, bias)`` and normalises the last dimension. They compute
in at least float32 (bf16/fp16 inputs are upcast, float64 stays float64) and
return the input dtype, so they behave the same under bf16 autocast, run in a
float64 model (reference and gradient checks), and can also normalise per-head
queries and keys (``qk_norm``). :func:`norm_for` builds the one a ``ModelConfig``
asks for (its ``norm_type``, ``bias`` and, for DyT, ``dyt_alpha``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.config import ModelConfig

EPS = 1e-5
DYT_ALPHA0 = 0.5  # Zhu et al. 2025, Section 7: the default alpha init outside LLMs


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


class DyT(Norm):
    """Dynamic Tanh (Zhu, Chen, He, LeCun, Liu 2025, "Transformers without Normalization",
    CVPR 2025, arXiv 2503.10622): ``DyT(x) = gamma * tanh(alpha * x) + beta``.

    Not a normalization (no statistic of ``x`` is computed): an elementwise squashing with
    one learnable scalar ``alpha`` per layer, initialised to ``alpha`` (the paper's
    ``alpha_0``, default 0.5, Section 7), a per-channel gain ``gamma = 1`` and bias
    ``beta = 0`` (absent with ``bias=False``, as in the authors' LLaMA code). As in the
    paper (``convert_ln_to_dyt``) it replaces every norm the placement has, the final one
    included. The authors' ``DynamicTanh`` keeps ``alpha`` as a tensor of shape ``(1,)``;
    so does this class (the same state_dict layout). Under ``qk_norm`` it is refused
    (``ModelConfig``): the paper has no QK-norm, and a tanh is not one.
    """

    def __init__(self, dim: int, bias: bool = True, alpha: float = DYT_ALPHA0) -> None:
        super().__init__(dim, bias)
        self.alpha_init = alpha
        self.alpha = nn.Parameter(torch.full((1,), float(alpha)))
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        xf = _upcast(x)
        y = torch.tanh(self.alpha * xf) * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.type_as(x)

    def extra_repr(self) -> str:
        return f"{self.dim}, alpha_init={self.alpha_init:g}, bias={self.bias is not None}"


NORMS: dict[str, type[Norm]] = {
    "layernorm": LayerNorm,
    "rmsnorm": RMSNorm,
    "scalenorm": ScaleNorm,
    "dyt": DyT,
}


def make_norm(norm_type: str, dim: int, bias: bool = True, *, alpha: float = DYT_ALPHA0) -> Norm:
    """The norm registered under ``norm_type`` for vectors of size ``dim`` (``alpha``:
    DyT's initial alpha; the other norms have none)."""
    cls = NORMS[norm_type]
    return cls(dim, bias, alpha) if issubclass(cls, DyT) else cls(dim, bias)


def norm_for(cfg: ModelConfig, dim: int | None = None) -> Norm:
    """The norm ``cfg`` asks for, over ``dim`` (default ``d_model``) channels."""
    return make_norm(cfg.norm_type, dim or cfg.d_model, cfg.bias, alpha=cfg.dyt_alpha)

"""Position-wise feed-forward layers: gelu, relu (two matrices), swiglu (three)."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from bench.config import ModelConfig


class FeedForward(nn.Module):
    """``d_model -> ffn_dim -> d_model`` with an activation; dropout on the output."""

    n_inputs: int = 1
    """How many input projections ``d_model -> ffn_dim`` the layer has, fused in ``fc_in``:
    one for gelu and relu, two for SwiGLU (gate and up). ``weight_blocks`` lists each,
    and the FLOP count (:mod:`bench.diagnostics.throughput.flops`) reads the matmul weights from
    there, so a new feed-forward with more projections is counted right."""
    activation: Callable[[Tensor], Tensor] = staticmethod(F.gelu)

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, h = cfg.d_model, cfg.ffn_dim
        self.fc_in = nn.Linear(d, h * self.n_inputs, bias=cfg.bias)
        self.fc_out = nn.Linear(h, d, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def hidden(self, x: Tensor) -> Tensor:
        """The nonlinearity applied to ``fc_in(x)``."""
        return self.activation(x)

    def weight_blocks(self) -> list[tuple[str, nn.Linear, slice]]:
        """``(role, linear, rows)`` of each logical matrix; roles: in (one per input), out."""
        h = self.fc_out.in_features
        ins = [("in", self.fc_in, slice(i * h, (i + 1) * h)) for i in range(self.n_inputs)]
        return [*ins, ("out", self.fc_out, slice(0, self.fc_out.out_features))]

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc_out(self.hidden(self.fc_in(x))))


class GELU(FeedForward):
    """Hendrycks & Gimpel 2016 (exact erf form), as in BERT/GPT-2."""

    activation = staticmethod(F.gelu)


class ReLU(FeedForward):
    """Vaswani et al. 2017."""

    activation = staticmethod(F.relu)


class SwiGLU(FeedForward):
    """Shazeer 2020: ``W2 (silu(x W) * x V)``; W and V are fused in ``fc_in``."""

    n_inputs = 2

    def hidden(self, x: Tensor) -> Tensor:
        gate, up = x.chunk(2, dim=-1)
        return F.silu(gate) * up


FEEDFORWARDS: dict[str, type[FeedForward]] = {"gelu": GELU, "relu": ReLU, "swiglu": SwiGLU}

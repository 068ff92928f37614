"""How init, forward multipliers and learning rates change with width: standard or µP.

A parameterization is built from the ``ModelConfig`` and ``train.mup_base_width`` and
handed to the model's constructor (``build_model(cfg, parameterization)``). The model
reads from it what it computes with (the attention scale, the readout multiplier, the
width its embeddings are scaled for) and calls :meth:`Parameterization.init` after its
init scheme (``INITS``); the optimizer (:mod:`bench.training.optimizer`) reads each
parameter's :class:`Width` and applies the learning-rate rule there.

- ``standard``: what the model always did. Nothing is rescaled; SDPA's
  ``1/sqrt(d_head)``; one learning rate.
- ``mup``: the maximal update parameterization for Adam (Yang et al. 2022, "Tensor
  Programs V: Tuning Large Neural Networks via Zero-Shot Hyperparameter Transfer",
  arXiv 2203.03466, Table 3) in the form of Microsoft's ``mup`` package (``MuReadout``,
  ``mup.init``, ``MuAdamW``), relative to a base model of ``d_model = base_width``
  whose other dimensions follow the config (heads fixed, ``d_head`` and a default
  ``d_ff`` grow with width; an explicit ``d_ff`` stays a finite dimension):

  - *init*: each parameter gets the init scheme's std at the base shapes; a matrix-like
    parameter (both dimensions grow with width) then x ``(fan_in / base fan_in)^-1/2``,
    i.e. variance ∝ 1/fan_in (``mup.init.xavier_*``, ``normal_``, ``kaiming_*``: the
    scheme's own initializer made µP). Embedding tables keep the base width's std, and
    the untied readout and the query projection start at zero (mup README).
  - *forward*: attention scores ``q.k * sqrt(base d_head) / d_head`` (the README's
    ``q.k * 8/d_head``, whose 8 is ``sqrt(64)``: here the base model's head width, so
    that µP equals standard at the base width); readout logits x ``base_width / d_model``
    (``MuReadout``/``MuSharedReadout`` with ``output_mult = 1``; Table 3's equivalent
    form of output variance 1/fan_in²); a ``sqrt_d`` embedding scale is
    ``sqrt(base_width)``, so the embeddings' output and their Adam updates do not grow
    with width.
  - *Adam*: matrix-like parameters' learning rate x ``1 / (fan_in / base fan_in)``, and
    their weight decay x the same width multiplier (``MuAdamW`` with
    ``decoupled_wd=False``: torch's AdamW shrinks a weight by ``lr * wd`` a step, which
    then stays the same at every width); embeddings, biases, norm gains and the readout
    keep the base learning rate.

  At ``d_model == base_width`` every multiplier is 1, so µP computes and trains exactly
  as standard except that the query and untied readout start at zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from bench.config import ModelConfig, embedding_std
from bench.model.weights import sublayers

if TYPE_CHECKING:
    from bench.model.weights import Stacked


@dataclass(frozen=True)
class Width:
    """One parameter's (or weight block's) dimensions against the base model's: mup's
    ``InfShape``. A dimension that differs from the base is infinite (grows with width)."""

    shape: tuple[int, ...]
    base: tuple[int, ...]

    @property
    def n_inf(self) -> int:
        """How many dimensions grow with width (mup's ``ninf``)."""
        return sum(d != b for d, b in zip(self.shape, self.base, strict=True))

    @property
    def matrix_like(self) -> bool:
        """Both dimensions grow with width: a hidden weight (Table 3's "hidden")."""
        return len(self.shape) == 2 and self.n_inf == 2

    @property
    def fan_in(self) -> float:
        """``fan_in / base fan_in`` (1 for a 1-d parameter or a finite fan-in)."""
        return self.shape[1] / self.base[1] if len(self.shape) == 2 else 1.0

    @property
    def fan_out(self) -> float:
        """``fan_out / base fan_out``."""
        return self.shape[0] / self.base[0]


class Parameterization:
    """The standard parameterization: the init scheme as it is, ``1/sqrt(d_head)``
    attention, a unit readout, one learning rate. Subclasses change these with width."""

    name = "standard"

    def __init__(self, cfg: ModelConfig, base_width: int | None = None) -> None:
        self.cfg = cfg
        self.base_width = base_width or cfg.d_model

    @property
    def attention_scale(self) -> float | None:
        """What attention scores are multiplied by (None: SDPA's ``1/sqrt(d_head)``)."""
        return None

    @property
    def readout_multiplier(self) -> float:
        """What the output logits are multiplied by."""
        return 1.0

    @property
    def embedding_width(self) -> int:
        """The ``d_model`` a ``sqrt_d`` embedding scale multiplies by ``sqrt`` of."""
        return self.cfg.d_model

    def init(self, model: Stacked) -> None:
        """Adjust the init scheme's weights (called once, after ``INITS``)."""

    def widths(self, model: nn.Module) -> dict[int, Width]:
        """``id(parameter) -> Width`` of the parameters whose learning rate and weight
        decay depend on width; empty for standard."""
        return {}

    def __repr__(self) -> str:
        return f"{self.name}(base_width={self.base_width})"


class MuP(Parameterization):
    """µP for Adam (Yang et al. 2022, Table 3) relative to a base model of
    ``d_model = base_width``; see the module docstring for each rule and its source."""

    name = "mup"

    def __init__(self, cfg: ModelConfig, base_width: int | None = None) -> None:
        super().__init__(cfg, base_width)
        # Only d_model changes: heads stay, d_head and a default d_ff follow the width.
        self.base_cfg = cfg.model_copy(update={"d_model": self.base_width})
        self.width_mult = cfg.d_model / self.base_width

    @property
    def attention_scale(self) -> float:
        """``sqrt(base d_head) / d_head``: 1/d scaling, equal to ``1/sqrt(d_head)`` at the
        base width (the mup README's ``8/d`` is this with a base ``d_head`` of 64)."""
        return math.sqrt(self.base_cfg.head_dim) / self.cfg.head_dim

    @property
    def readout_multiplier(self) -> float:
        """``1 / width_mult``: ``MuReadout``'s ``output_mult / width_mult``."""
        return self.base_width / self.cfg.d_model

    @property
    def embedding_width(self) -> int:
        return self.base_width

    def base_model(self, model: nn.Module) -> nn.Module:
        """The base model: the same class built at ``base_width`` (standard), for its
        shapes only (mup's ``set_base_shapes``). Built on the CPU, where the base width is
        small, leaving the global RNG as it was, so that a µP model draws the same numbers
        as a standard one of the same seed (the meta device would need no memory, but its
        init functions take ~0.15 s a call)."""
        with torch.random.fork_rng(devices=[]):
            return type(model)(self.base_cfg)

    def widths(self, model: nn.Module) -> dict[int, Width]:
        base = dict(self.base_model(model).named_parameters())
        return {
            id(p): Width(tuple(p.shape), tuple(base[name].shape))
            for name, p in model.named_parameters()
        }

    @torch.no_grad()
    def init(self, model: Stacked) -> None:
        """``mup.init``'s version of the model's init scheme, then the zero inits."""
        scheme = self.cfg.resolved()["init"]
        adjust = INIT_ADJUSTMENTS[scheme]
        base = cast("Stacked", self.base_model(cast(nn.Module, model)))
        linears: dict[int, tuple[nn.Linear, nn.Linear]] = {}
        for (sub, _), (base_sub, _) in zip(sublayers(model), sublayers(base), strict=True):
            for (role, linear, rows), (_, base_linear, base_rows) in zip(
                sub.weight_blocks(), base_sub.weight_blocks(), strict=True
            ):
                linears[id(linear)] = (linear, base_linear)
                block = Width(
                    (rows.stop - rows.start, linear.in_features),
                    (base_rows.stop - base_rows.start, base_linear.in_features),
                )
                factor = adjust(block)
                if factor != 1.0:
                    linear.weight[rows] *= factor
                if role == "q":  # mup README: a zero query keeps attention logits at 0 at init
                    linear.weight[rows] = 0.0
                    if linear.bias is not None:
                        linear.bias[rows] = 0.0
        if scheme == "torch":  # nn.Linear's U(+-fan_in^-1/2) biases: mup.rescale_linear_bias
            for linear, base_linear in linears.values():
                if linear.bias is not None:
                    linear.bias.mul_(math.sqrt(linear.in_features / base_linear.in_features))
        ratio = embedding_std(scheme, self.base_width) / embedding_std(scheme, self.cfg.d_model)
        for m in model.modules():
            if isinstance(m, nn.Embedding) and ratio != 1.0:
                m.weight *= ratio  # every table keeps the base width's std (vector-like)
        if not self.cfg.tie_embeddings:
            head = cast(nn.Module, model).get_submodule("lm_head")
            cast(nn.Linear, head).weight.zero_()  # MuReadout(readout_zero_init=True)


def xavier_adjustment(w: Width) -> float:
    """``mup.init._inf_fan_adjust_xavier``: the base shapes' xavier std, then
    ``fan_in^-1/2`` for a matrix-like weight."""
    (fo, fi), (fob, fib) = w.shape, w.base
    scale = math.sqrt((fo + fi) / (fob + fib))
    return scale / math.sqrt(w.fan_in) if w.matrix_like else scale


def constant_std_adjustment(w: Width) -> float:
    """``mup.init.normal_`` for a width-independent std (gpt2's 0.02): a matrix-like
    weight x ``fan_in^-1/2``, anything else unchanged."""
    return w.fan_in**-0.5 if w.matrix_like else 1.0


def kaiming_fan_in_adjustment(w: Width) -> float:
    """``mup.init._inf_fan_adjust_kaiming`` (mode fan_in; nn.Linear's default init):
    a matrix-like weight already has variance ∝ 1/fan_in; a weight with only its fan-in
    infinite keeps the base std."""
    if w.n_inf == 1 and w.shape[1] != w.base[1]:
        return math.sqrt(w.fan_in)
    return 1.0


INIT_ADJUSTMENTS: dict[str, Callable[[Width], float]] = {
    "torch": kaiming_fan_in_adjustment,
    "gpt2": constant_std_adjustment,
    "xavier": xavier_adjustment,
    "deepnorm": xavier_adjustment,  # xavier-normal with gain beta (depth only)
}
"""Per init scheme (``INITS``): the factor that makes its std at a block's shape µP."""

PARAMETERIZATIONS: dict[str, type[Parameterization]] = {
    "standard": Parameterization,
    "mup": MuP,
}

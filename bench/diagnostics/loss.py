"""The loss a diagnostic measures, as a function of the module or of its parameters.

Every diagnostic that evaluates a loss measures the *training* loss by default
(:func:`training_loss`: the one the optimizer descends, with its label
smoothing) and records which one (:func:`loss_name`). :func:`loss_at` makes it a
pure function of the parameters (``torch.func.functional_call``), which the
Hessian differentiates twice and the landscape ``vmap``-s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from torch import Tensor, nn
from torch.func import functional_call

LossFn = Callable[[nn.Module, Any], Tensor]


class _LossModule(nn.Module):
    """Makes ``loss_fn(module, batch)`` the forward, so functional_call can swap parameters."""

    def __init__(self, module: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.module = module
        self.loss_fn = loss_fn

    def forward(self, batch: Any) -> Tensor:
        return self.loss_fn(self.module, batch)


def loss_at(module: nn.Module, loss_fn: LossFn) -> Callable[[Mapping[str, Tensor], Any], Tensor]:
    """``f(params, batch)``: the loss with the module's parameters replaced by ``params``.

    Parameters not named in ``params`` (and all buffers) keep their current values.
    """
    wrapper = _LossModule(module, loss_fn)

    def f(params: Mapping[str, Tensor], batch: Any) -> Tensor:
        named = {f"module.{n}": p for n, p in params.items()}
        return functional_call(wrapper, named, (batch,))

    return f


def training_loss(module: nn.Module, batch: Any) -> Tensor:
    """The loss training descends, the default of every diagnostic.

    ``module.training_loss(batch)`` (:class:`bench.training.module.BenchModule`: cross-entropy
    with ``train.label_smoothing``), else ``module.compute_loss(batch)``.
    """
    method = getattr(module, "training_loss", None) or module.compute_loss
    fn = cast(Callable[[Any], Tensor], method)  # nn.Module types attributes as Tensor | Module
    return fn(batch)


def loss_name(module: nn.Module, loss_fn: Callable[..., Any]) -> str:
    """What a diagnostic measures, for its records: e.g. ``cross_entropy(label_smoothing=0.1)``."""
    if loss_fn is training_loss:
        if hasattr(module, "training_loss_name"):
            return str(module.training_loss_name)
        has = "training_loss" if hasattr(module, "training_loss") else "compute_loss"
        return f"{type(module).__name__}.{has}"
    return getattr(loss_fn, "__qualname__", repr(loss_fn))

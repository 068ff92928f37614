"""How many landscape grid points fit in memory at once (the ``vmap`` chunk size).

:func:`point_bytes` counts the bytes of every tensor the ATen operators of one
loss evaluation produce, with ``torch.utils._python_dispatch.TorchDispatchMode``
(a private module; the mode class is the documented way to see every operator,
and ``FlopCounterMode`` is built on it). No public API does this job:
``torch.overrides.TorchFunctionMode`` sees Python-level calls, so a composite
like the math SDPA kernel is one call and its ``T x T`` intermediates would be
missed (a smaller estimate, larger chunks, a risk of running out of memory);
``torch.cuda.max_memory_allocated`` exists on CUDA only and needs a real
evaluation; ``torch.func.functional_call`` (already used for the evaluation
itself) measures nothing. So the private import stays, here only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from bench.config import ConfigError
from bench.diagnostics.context import functional_context
from bench.diagnostics.loss import LossFn, loss_at
from bench.diagnostics.parameters import (
    trainable_params,
)


class _OutputBytes(TorchDispatchMode):
    """Sums the bytes of every non-view tensor that any op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, Tensor) and not t._is_view():
                self.total += t.numel() * t.element_size()
        return out


def point_bytes(module: nn.Module, loss_fn: LossFn, batch: Any) -> int:
    """Bytes one grid point costs: every op output of one loss evaluation (an upper
    bound on what is alive at once) plus four parameter-sized temporaries."""
    params = trainable_params(module)
    param_bytes = sum(p.numel() * p.element_size() for p in params.values())
    counter = _OutputBytes()
    with functional_context(module, grad=False), counter:
        loss_at(module, loss_fn)(params, batch)
    return counter.total + 4 * param_bytes


def _cpu_budget(device: torch.device) -> int:
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        free = 4 << 30
    return int(min(0.25 * free, 2 << 30))


def _cuda_budget(device: torch.device) -> int:
    free, _ = torch.cuda.mem_get_info(device)
    return int(0.5 * free)


MEMORY_BUDGETS: dict[str, Callable[[torch.device], int]] = {
    "cpu": _cpu_budget,
    "cuda": _cuda_budget,
}


def default_memory_budget(device: torch.device) -> int:
    """Bytes a grid chunk may use: half the free GPU memory, or a quarter of free RAM
    (at most 2 GiB) on CPU and other devices."""
    return MEMORY_BUDGETS.get(device.type, _cpu_budget)(device)


def choose_chunk_size(
    per_point: int, budget: int, n_points: int, requested: int | None = None
) -> int:
    """Grid points per vmap call that fit ``budget`` bytes; ConfigError (one line) if none do
    or if ``requested`` does not."""
    mib = 1 << 20
    if per_point > budget:
        raise ConfigError(
            f"landscape: one grid point needs ~{per_point / mib:.0f} MiB but the memory budget "
            f"is {budget / mib:.0f} MiB; use fewer or smaller evaluation batches, or a larger budget"
        )
    fit = budget // per_point
    if requested is not None:
        if requested > fit:
            raise ConfigError(
                f"landscape: chunk_size={requested} needs ~{requested * per_point / mib:.0f} MiB, "
                f"over the {budget / mib:.0f} MiB budget; allowed: chunk_size <= {fit}"
            )
        return max(1, min(requested, n_points))
    return max(1, min(fit, n_points))

"""The trainable parameters of a module as one flat vector, and back.

The Hessian and the loss landscape treat a model's weights as one point in
parameter space: :func:`trainable_params` names them, :func:`flatten_params`
and :func:`unflatten_params` convert between that mapping and a flat vector.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

Params = dict[str, Tensor]


def trainable_params(module: nn.Module) -> Params:
    """The module's trainable parameters by name (detached; tied weights listed once)."""
    return {n: p.detach() for n, p in module.named_parameters() if p.requires_grad}


def flatten_params(params: Mapping[str, Tensor]) -> Tensor:
    """Concatenate parameters (in mapping order) into one flat vector."""
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflatten_params(flat: Tensor, like: Mapping[str, Tensor]) -> Params:
    """Split a flat vector back into tensors shaped like ``like`` (views, no copy)."""
    sizes = [p.numel() for p in like.values()]
    if flat.shape[-1] != sum(sizes):
        raise ValueError(f"flat vector has {flat.shape[-1]} entries, parameters have {sum(sizes)}")
    parts = flat.split(sizes, dim=-1)
    return {
        n: t.reshape((*flat.shape[:-1], *p.shape))
        for (n, p), t in zip(like.items(), parts, strict=True)
    }


def as_flat(x: Tensor | np.ndarray | Mapping[str, Tensor], like: Mapping[str, Tensor]) -> Tensor:
    """A flat vector from a flat tensor/array or a name->tensor mapping ordered like ``like``."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if isinstance(x, Tensor):
        return x.reshape(-1)
    missing = [n for n in like if n not in x]
    if missing:
        raise KeyError(f"parameters missing from the given mapping: {missing[:3]}")
    return torch.cat([x[n].reshape(-1).to(like[n]) for n in like])


def n_params(params: Mapping[str, Tensor]) -> int:
    """Number of scalar parameters."""
    return sum(p.numel() for p in params.values())

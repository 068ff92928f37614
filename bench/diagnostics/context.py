"""The context in which a loss can be differentiated twice and ``vmap``-ed.

Eval mode (dropout off), the math SDPA kernel and autocast off:
:func:`functional_context`. :func:`isolated_rng` keeps a diagnostic's random
draws out of the training run's random stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel


def sdpa_backends(device: torch.device) -> list[SDPBackend]:
    """The SDPA kernels allowed while differentiating twice or vmapping the loss.

    Always the math kernel, on every device: the CUDA flash, memory-efficient and
    cuDNN kernels have no double backward and no forward-mode AD, and the CPU
    flash kernel (``_scaled_dot_product_flash_attention_for_cpu``, chosen by
    default on CPU in torch 2.13) has no double backward and no vmap batching rule.
    The math kernel is built from differentiable, batchable primitives.
    """
    del device  # the answer is the same everywhere; kept so callers state the device
    return [SDPBackend.MATH]


def _module_device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Dropout off for the duration; each submodule's train/eval flag restored after."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


@contextlib.contextmanager
def functional_context(module: nn.Module, *, grad: bool) -> Iterator[torch.device]:
    """Eval mode, math SDPA, autocast off, grad on (or off) — yields the device.

    Autocast is disabled so that a ``bf16-mixed`` run measures its float32 weights
    in float32: second-order quantities in bf16 are mostly rounding noise.
    """
    device = _module_device(module)
    with contextlib.ExitStack() as stack:
        stack.enter_context(eval_mode(module))
        stack.enter_context(sdpa_kernel(sdpa_backends(device)))
        stack.enter_context(torch.autocast(device_type=device.type, enabled=False))
        stack.enter_context(torch.enable_grad() if grad else torch.no_grad())
        yield device


def compute_dtype(module: nn.Module) -> str:
    """What a diagnostic inside :func:`functional_context` computes in, e.g. ``"float32"``.

    Autocast is off there, so every matmul runs in the parameters' own dtype:
    float32 for ``32-true`` and ``bf16-mixed`` runs (bf16 autocast keeps float32
    weights), float64 for ``64-true``. The Hessian and landscape files record it.
    """
    p = next((p for p in module.parameters() if p.is_floating_point()), None)
    return str(p.dtype).removeprefix("torch.") if p is not None else "float32"


@contextlib.contextmanager
def isolated_rng(device: torch.device) -> Iterator[None]:
    """Diagnostics' dropout draws must not shift the training run's random stream."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def autocast_precision(precision: Any) -> bool:
    """True for a Trainer precision that trains under autocast (``bf16-mixed``, ``16-mixed``)."""
    return str(precision).endswith("-mixed")

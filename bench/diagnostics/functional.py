"""Shared helpers for diagnostics that evaluate a loss at other parameters.

The Hessian and loss-landscape code needs the same few things: the trainable
parameters as one flat vector, the loss as a pure function of parameters
(``torch.func.functional_call``), a context in which that function can be
differentiated twice and ``vmap``-ed (eval mode, the math SDPA kernel, autocast
off), and atomic file output (npz and png written to a temp name, then renamed).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

LossFn = Callable[[nn.Module, Any], Tensor]
Params = dict[str, Tensor]

# ----------------------------------------------------------------------------- parameters


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


# ----------------------------------------------------------------------------- the loss


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
    fn = getattr(module, "training_loss", None) or module.compute_loss
    return fn(batch)


def loss_name(module: nn.Module, loss_fn: Callable[..., Any]) -> str:
    """What a diagnostic measures, for its records: e.g. ``cross_entropy(label_smoothing=0.1)``."""
    if loss_fn is training_loss:
        if hasattr(module, "training_loss_name"):
            return str(module.training_loss_name)
        has = "training_loss" if hasattr(module, "training_loss") else "compute_loss"
        return f"{type(module).__name__}.{has}"
    return getattr(loss_fn, "__qualname__", repr(loss_fn))


def as_batches(batch_or_batches: Any) -> list[Any]:
    """A list of batches from one batch (a dict/tensor/tuple) or a list of them."""
    if isinstance(batch_or_batches, list):
        return batch_or_batches
    return [batch_or_batches]


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a (nested) batch to ``device``."""
    if isinstance(batch, Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


# ----------------------------------------------------------------------------- context


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


# ----------------------------------------------------------------------------- files


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside ``path``, renamed onto it when the block succeeds (else removed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; results are for everyone who reads the run
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_npz(path: Path, /, **arrays: Any) -> Path:
    """Write arrays to ``path`` (.npz) atomically: a reader never sees half a file."""
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
    return Path(path)


def new_figure(figsize: tuple[float, float] = (6.0, 4.5)) -> Any:
    """A matplotlib Figure on the Agg canvas, without pyplot (no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)

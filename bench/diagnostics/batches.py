"""Batches as diagnostics see them: bench's batch layouts, sizes, slices and copies.

A bench batch is a dict of tensors: ``input_ids`` (+ ``labels``, ``pad_mask``)
for a decoder, ``src`` / ``tgt_in`` (+ ``labels``, ``src_pad``) for an
encoder-decoder. :data:`BATCH_KINDS` says how the model is called on each and
which tensors count as tokens (what ``BenchModule`` does in ``bench.training.module``; the
diagnostics need it without Lightning, e.g. on the meta device). The other
helpers work on any nesting of dicts, lists and tuples of tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

Batch = Any


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
        rebuild: Callable[[Iterable[Any]], Any] = type(batch)  # list, tuple, ...
        return rebuild(move_to(v, device) for v in batch)
    return batch


def batch_size_of(batch: Batch) -> int:
    """Leading dimension of the first tensor in a batch (dict, sequence or tensor)."""
    for t in _tensors(batch):
        return int(t.shape[0])
    raise ValueError("batch holds no tensor")


def _tensors(batch: Batch) -> Iterator[Tensor]:
    if isinstance(batch, Tensor):
        yield batch
    elif isinstance(batch, Mapping):
        for v in batch.values():
            yield from _tensors(v)
    elif isinstance(batch, list | tuple):
        for v in batch:
            yield from _tensors(v)


def slice_batch(batch: Batch, n: int) -> Batch:
    """The first ``n`` examples of a batch (tensors sliced along dim 0)."""
    if isinstance(batch, Tensor):
        return batch[:n]
    if isinstance(batch, Mapping):
        return {k: slice_batch(v, n) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(slice_batch(v, n) for v in batch)
    return batch


def clone_batch(batch: Batch) -> Batch:
    """A detached copy of every tensor in a (nested) batch."""
    if isinstance(batch, Tensor):
        return batch.detach().clone()
    if isinstance(batch, Mapping):
        return {k: clone_batch(v) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(clone_batch(v) for v in batch)
    return batch


# Batch keys -> how the model is called and which tensors count as tokens.
BATCH_KINDS: dict[str, dict[str, Any]] = {
    "src": {
        "forward": lambda m, b: m(b["src"], b["tgt_in"], b.get("src_pad")),
        "tokens": ("src", "tgt_in"),
    },
    "input_ids": {
        "forward": lambda m, b: m(b["input_ids"], b.get("pad_mask")),
        "tokens": ("input_ids",),
    },
}


def _kind(batch: Mapping[str, Any]) -> dict[str, Any]:
    for key, kind in BATCH_KINDS.items():
        if key in batch:
            return kind
    raise ValueError(
        f"unknown batch layout with keys {sorted(batch)}; expected one of {sorted(BATCH_KINDS)}"
    )


def model_forward(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """Logits of ``model`` for a bench batch of either architecture."""
    return _kind(batch)["forward"](model, batch)


def batch_tokens(batch: Mapping[str, Tensor]) -> int:
    """Tokens a batch feeds the model (source + target for an encoder-decoder)."""
    return sum(int(batch[k].numel()) for k in _kind(batch)["tokens"])

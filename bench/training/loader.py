"""A deterministic, resumable training loader.

Each epoch is shuffled by a generator seeded with ``(seed, epoch)``, so the
batch a step sees is a pure function of the step. A resumed run calls
``seek(global_step)`` and then sees the same batches in the same order as an
uninterrupted one. (Lightning's own stateful-loader hook is not used on
purpose: its fetcher runs one batch ahead, so the saved position would be off
by one.) Under DDP each rank takes its own stride of the permutation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
import torch.distributed as dist


class MapDataset(Protocol):
    """A map-style dataset: a length and examples by index (every task's datasets)."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Any: ...


class ResumableLoader:
    """Iterates ``dataset`` in seeded-shuffled batches; ``seek`` resumes mid-epoch."""

    def __init__(
        self,
        dataset: MapDataset,
        batch_size: int,
        collate_fn: Callable[[list[Any]], Any],
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.collate_fn = collate_fn
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self._served = 0  # batches of `self.epoch` already yielded

    def _rank_world(self) -> tuple[int, int]:
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _indices(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(len(self.dataset), generator=g).tolist()
        rank, world = self._rank_world()
        if world > 1:
            usable = len(perm) // world * world  # equal shares keep ranks in step
            perm = perm[rank:usable:world]
        return perm

    def __len__(self) -> int:
        _, world = self._rank_world()
        n = len(self.dataset) // world
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        idx = self._indices()
        n_batches = len(self)
        for b in range(self._served, n_batches):
            chunk = idx[b * self.batch_size : (b + 1) * self.batch_size]
            self._served = b + 1
            yield self.collate_fn([self.dataset[i] for i in chunk])
        self.epoch += 1
        self._served = 0

    def seek(self, consumed_batches: int) -> None:
        """Continue as if ``consumed_batches`` batches had already been drawn."""
        self.epoch, self._served = divmod(consumed_batches, len(self))

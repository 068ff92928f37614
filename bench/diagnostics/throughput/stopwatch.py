"""A stopwatch for the time diagnostics spend inside a training step.

Any heavy diagnostic wraps its work in ``with exclude_from_throughput(): ...``;
:class:`~bench.diagnostics.throughput.callback.ThroughputDiagnostics` subtracts the time
spent inside such blocks from the step it falls into, so that tokens/s and MFU
measure training, not measuring.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch


class Stopwatch:
    """Accumulates wall time spent inside :meth:`exclude` blocks (nested blocks count once)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.total = 0.0
        self._depth = 0
        self._t0 = 0.0

    @contextmanager
    def exclude(self) -> Iterator[None]:
        if self._depth == 0:
            sync_cuda()  # queued training kernels belong to the training step
            self._t0 = self.clock()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                sync_cuda()
                self.total += self.clock() - self._t0


DIAGNOSTICS_TIME = Stopwatch()


def exclude_from_throughput() -> AbstractContextManager[None]:
    """Context manager: time spent inside is not counted as training time.

    Usage in a heavy callback: ``with exclude_from_throughput(): run_hessian(...)``.
    """
    return DIAGNOSTICS_TIME.exclude()


def sync_cuda() -> None:
    """Wait for queued CUDA kernels (when CUDA is in use), so a clock reading is honest."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()

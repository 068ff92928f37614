"""How many grid points each ``vmap`` call evaluates: measured once, then remembered.

The fastest chunk is not the largest that fits in memory: on CPU a chunk's
activations outgrow the caches, and a 441-point plane of a 100k-parameter model
ran slower in one chunk than point by point (issue 15). Nor is it a constant: it
moves with the model, the batch, the device and the threads. So
:meth:`ChunkChoices.evaluate` measures it on the points it has to evaluate
anyway: after three points that warm up both paths (untimed), the next 4 points
one at a time (the per-point path), then the next 4, 8, 16, ... points as one
chunk each (up to what fits the memory budget, and until a size is 25% slower
a point than the best so far: larger chunks only outgrow the caches more); it keeps the size with the least time per point, the per-point path
included (so a chunk is never chosen that is slower than the loop), evaluates
the rest with it and remembers it under the key it was given (model size,
device, threads, batch shapes) for the next plane of the same model in this
process. No point is evaluated twice, and the values depend on the choice only
by rounding (a chunk batches the matmuls, which sums in another order).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

CANDIDATES: tuple[int, ...] = (1, 4, 8, 16, 32, 64)  # 1: the per-point path, no vmap
WARM_UP: tuple[tuple[int, int], ...] = ((1, 1), (2, 2))  # (chunk, points): untimed first calls
LOOP_POINTS = 4  # points the per-point path is timed on
GIVE_UP = 1.25  # a chunk this much slower a point than the best so far: larger ones are not tried

Run = Callable[[int, int, int], None]  # run(start, stop, chunk): evaluate points [start, stop)


class ChunkChoices:
    """Measured chunk sizes by key; :data:`CHUNKS` is the process-wide instance."""

    def __init__(
        self,
        candidates: tuple[int, ...] = CANDIDATES,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.candidates = candidates
        self.clock = clock  # wall seconds: what a run waits for
        self.chosen: dict[Hashable, int] = {}
        self.timings: dict[Hashable, dict[int, float]] = {}  # seconds per point, as measured

    def evaluate(self, key: Hashable, fit: int, n_points: int, run: Run) -> int:
        """Evaluate points ``[0, n_points)`` with ``run``, in the remembered chunk size for
        ``key`` or, the first time, measuring it on the way; returns the size used."""
        if key in self.chosen:
            chunk = min(self.chosen[key], fit)
            run(0, n_points, chunk)
            return chunk
        sizes = [c for c in self.candidates if c <= fit]
        per_point: dict[int, float] = {}
        start = 0
        for size, count in WARM_UP:
            if size <= fit and start + count <= n_points:
                run(start, start + count, size)
                start += count
        gave_up = False
        for size in sizes:
            count = LOOP_POINTS if size == 1 else size
            if start + count > n_points:
                break
            began = self.clock()
            run(start, start + count, size)
            per_point[size] = (self.clock() - began) / count
            start += count
            gave_up = per_point[size] > GIVE_UP * min(per_point.values())
            if gave_up:
                break
        chunk = min(per_point, key=per_point.__getitem__) if per_point else 1
        if gave_up or len(per_point) == len(sizes):  # every size worth trying measured
            self.chosen[key] = chunk
            self.timings[key] = per_point
        if start < n_points:
            run(start, n_points, chunk)
        return chunk

    def clear(self) -> None:
        self.chosen.clear()
        self.timings.clear()


CHUNKS = ChunkChoices()

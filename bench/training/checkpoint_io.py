"""Saving checkpoints so that a crash or a full disk never leaves half of one.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction: on a local
disk that is a temporary file in ``/tmp``, moved onto ``last.ckpt`` when done. When
``/tmp`` is another file system than the run directory (the usual case: a tmpfs
``/tmp``, runs on a disk or a scratch volume) the move is a copy into
``last.ckpt`` itself: a crash or a full disk during it leaves a truncated
``last.ckpt``, and the previous, good checkpoint is gone. A sweep trial resumed
from it must then start again from step 0 (``tools/chaos.py`` found this).

:class:`AtomicCheckpointIO` serialises in memory and writes through
:func:`bench.io.atomic_write`: a temporary file beside the target, flushed and
renamed over it. A failed save leaves the previous checkpoint as it was.
"""

from __future__ import annotations

import io
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from bench.io import atomic_write


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves replace the old file in one rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        atomic_write(path, buffer.getvalue())

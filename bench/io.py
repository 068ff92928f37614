"""Writing files so that a reader never sees half of one, and saving figures.

Every file bench writes for others to read (run records, sweep specs, exports,
diagnostics arrays and figures, the journal repair, the peak-FLOP/s cache) goes
through :func:`atomic_path`: the content is written to a temporary file beside
the target, flushed to disk, made readable by everyone (``0644``: results are
for whoever reads the run) and renamed over the target. A crash leaves either
the old file or the new one, and no temporary file behind.

Plain Python on purpose (numpy and matplotlib are imported inside the
functions that need them): the report and ``bench ls`` read and write runs
through :mod:`bench.records`, which uses this module, without importing torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto it when the block succeeds.

    Write the content to the yielded path (by name: ``np.savez(tmp)``,
    ``fig.savefig(tmp)``, ``open(tmp, "w")``). When the block raises, the
    temporary file is removed and ``path`` is left as it was. An ``OSError``
    without a file name gets ``path``'s, so the message says which file failed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600
        os.close(fd)
        yield Path(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not e.filename:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def _fsync(name: str) -> None:
    """Flush a written file's data to disk before it is renamed into place."""
    with open(name, "rb") as f:
        os.fsync(f.fileno())


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)


def write_json(path: str | Path, data: Any, *, indent: int = 2) -> None:
    """``data`` as sorted, indented JSON (unknown types as ``str``), atomically."""
    atomic_write(path, json.dumps(data, indent=indent, sort_keys=True, default=str) + "\n")


def save_npz(path: str | Path, /, **arrays: Any) -> Path:
    """Arrays into an uncompressed ``.npz`` at ``path``, atomically; returns ``path``."""
    import numpy as np

    named: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **named)
    return Path(path)


def new_figure(figsize: tuple[float, float] = (6.0, 4.5)) -> Figure:
    """A matplotlib Figure on the Agg canvas, without pyplot (no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, *, dpi: int = 120, tight: bool = True) -> Path:
    """``fig`` as a PNG at ``path``, atomically; ``tight`` crops to the drawn content."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return Path(path)

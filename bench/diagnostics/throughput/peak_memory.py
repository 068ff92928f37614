"""Peak memory of this process: CUDA's max allocated, or the peak resident set on CPU."""

from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable
from pathlib import Path

import torch


def _rss_peak_mb() -> float:
    """Peak resident set size of this process (VmHWM; ru_maxrss as a fallback)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _reset_rss_peak() -> None:
    with contextlib.suppress(OSError):  # "5" resets the peak RSS (Linux >= 4.0)
        Path("/proc/self/clear_refs").write_text("5")


PEAK_MEMORY: dict[str, tuple[Callable[[torch.device], float], Callable[[torch.device], None]]] = {
    "cuda": (
        lambda d: torch.cuda.max_memory_allocated(d) / 2**20,
        lambda d: torch.cuda.reset_peak_memory_stats(d),
    ),
    "cpu": (lambda d: _rss_peak_mb(), lambda d: _reset_rss_peak()),
}


def peak_memory_mb(device: torch.device | str) -> float:
    """Peak memory in MiB: CUDA max allocated, or the process's peak RSS on CPU."""
    device = torch.device(device)
    read, _ = PEAK_MEMORY.get(device.type, PEAK_MEMORY["cpu"])
    return float(read(device))


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a new peak-memory measurement (per process on CPU)."""
    device = torch.device(device)
    _, reset = PEAK_MEMORY.get(device.type, PEAK_MEMORY["cpu"])
    reset(device)

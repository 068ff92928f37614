"""The peak FLOP/s that MFU divides by: a table of known GPUs, else a measured matmul peak.

Order of precedence (:func:`peak_flops`): ``DiagnosticsConfig.peak_flops`` (an
override) -> :data:`KNOWN_PEAKS` for a recognised GPU and compute dtype ->
Lightning's ``get_available_flops`` for a GPU this table lacks (H200, A6000,
A40, L40, more GeForce cards) -> a matrix-multiply peak measured once per machine (device name, threads, dtype)
and cached in ``$XDG_CACHE_HOME/bench/peak_flops.json`` (default
``~/.cache/bench/peak_flops.json``).

Table figures are the vendors' DENSE tensor-core numbers (the datasheets'
headline bf16/tf32 figures are often "with sparsity", i.e. 2x the dense rate).

Why not Lightning's ``lightning.fabric.utilities.throughput.get_available_flops``
(checked against the ``_CUDA_FLOPS`` table of lightning 2.6.6): it agrees for A100, A10G, L4,
T4, V100 (SXM and PCIe) and H100 (SXM and PCIe), but not for the rest of this
table: its H100 NVL figures are those of the NVL *pair* (bf16 1978.8 vs 835.5
TFLOP/s), its RTX 4090 / 3090 bf16 figures are the fp16-accumulate rate (82.6 /
35.6 vs 165.2 / 71), and it has no L40S, A800 or H800. It also reads the device
name itself (no name argument, so it cannot be tested without that GPU) and
decides tf32 from the GPU generation at call time. Taking it for the GPUs where
it agrees would keep this table anyway, so the table stays whole, and Lightning's
figures are asked only for GPUs the table does not know.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bench.io import atomic_write

# Dense peak FLOP/s per compute dtype. Sources: NVIDIA datasheets / architecture
# whitepapers (A100 datasheet; H100 datasheet; L4 datasheet; A10 datasheet; V100
# datasheet; Ada (RTX 4090) and Ampere GA102 (RTX 3090) whitepapers, "FP16/BF16
# tensor TFLOPS with FP32 accumulate"). Patterns are tried in order on the
# lower-cased CUDA device name; the first match wins.
KNOWN_PEAKS: list[tuple[str, dict[str, float]]] = [
    (r"h100.*(pcie)", {"fp32": 51.2e12, "tf32": 378e12, "bf16": 756e12, "fp16": 756e12}),
    (r"h100.*nvl", {"fp32": 60e12, "tf32": 417.5e12, "bf16": 835.5e12, "fp16": 835.5e12}),
    (r"h100|h800", {"fp32": 66.9e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12}),  # SXM
    (r"a100|a800", {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12}),
    (r"l40s", {"fp32": 91.6e12, "tf32": 183e12, "bf16": 362e12, "fp16": 362e12}),
    (r"\bl4\b", {"fp32": 30.3e12, "tf32": 60e12, "bf16": 121e12, "fp16": 121e12}),
    (r"a10g?\b", {"fp32": 31.2e12, "tf32": 62.5e12, "bf16": 125e12, "fp16": 125e12}),
    (r"v100.*pcie", {"fp32": 14e12, "tf32": 14e12, "fp16": 112e12}),  # no bf16/tf32 units
    (r"v100", {"fp32": 15.7e12, "tf32": 15.7e12, "fp16": 125e12}),
    (r"rtx 4090", {"fp32": 82.6e12, "tf32": 82.6e12, "bf16": 165.2e12, "fp16": 165.2e12}),
    (r"rtx 3090", {"fp32": 35.6e12, "tf32": 35.6e12, "bf16": 71e12, "fp16": 71e12}),
    (r"\bt4\b", {"fp32": 8.1e12, "tf32": 8.1e12, "fp16": 65e12}),
]

# Trainer precision -> the dtype the matmuls run in.
_PRECISION_DTYPE = {
    "bf16-mixed": "bf16",
    "bf16-true": "bf16",
    "bf16": "bf16",
    "16-mixed": "fp16",
    "16-true": "fp16",
    "16": "fp16",
}
_TORCH_DTYPE = {
    "fp32": torch.float32,
    "tf32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def compute_dtype(precision: str) -> str:
    """``"bf16" | "fp16" | "tf32" | "fp32"`` for a Lightning precision string.

    Full precision counts as tf32 when PyTorch is allowed to use TF32 for matmuls
    (``torch.set_float32_matmul_precision("high")``); that only matters on GPUs.
    """
    if str(precision) in _PRECISION_DTYPE:
        return _PRECISION_DTYPE[str(precision)]
    return "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def matmul_dtype(precision: str) -> torch.dtype:
    """The torch dtype the matmuls of a Lightning precision run in (float32 for fp32 and tf32)."""
    return _TORCH_DTYPE[compute_dtype(precision)]


def device_name(device: torch.device | str) -> str:
    """A human name for the device: the CUDA name, or the CPU model."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def known_peak(name: str, dtype: str) -> float | None:
    """Dense peak FLOP/s of a recognised GPU for ``dtype``, else None."""
    lowered = name.lower()
    for pattern, peaks in KNOWN_PEAKS:
        if re.search(pattern, lowered):
            return peaks.get(dtype)
    return None


def lightning_peak(device: torch.device, dtype: str) -> float | None:
    """Lightning's theoretical peak for the current CUDA device and ``dtype``, else None."""
    import warnings

    from lightning.fabric.utilities.throughput import get_available_flops

    with warnings.catch_warnings():  # an unknown GPU is a warning there, None here
        warnings.simplefilter("ignore")
        value = get_available_flops(torch.device(device), _TORCH_DTYPE[dtype])
    return float(value) if value else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_matmul_peak(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    sizes: Sequence[int] = (512, 1024, 2048),
    min_time: float = 0.25,
) -> float:
    """Best achieved FLOP/s of square ``n x n @ n x n`` matmuls over ``sizes``.

    Each size is warmed up, then timed for at least ``min_time`` seconds in
    chunks; the fastest chunk counts (less noise from other processes). Uses
    the current ``torch.get_num_threads()``.
    """
    device = torch.device(device)
    best = 0.0
    gen = torch.Generator(device="cpu").manual_seed(0)
    for n in sizes:
        a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
        flops = 2.0 * n**3
        torch.mm(a, b)
        _sync(device)
        reps = 1
        while True:  # grow the chunk until it lasts ~min_time/5
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            _sync(device)
            dt = time.perf_counter() - t0
            if dt >= min_time / 5:
                break
            reps *= 2
        best = max(best, flops * reps / dt)
        spent = dt
        while spent < min_time:
            t0 = time.perf_counter()
            for _ in range(reps):
                torch.mm(a, b)
            _sync(device)
            dt = time.perf_counter() - t0
            spent += dt
            best = max(best, flops * reps / dt)
    return best


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/bench`` (``~/.cache/bench`` when unset): bench's measured-speed caches."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "bench"


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/bench/peak_flops.json`` (``~/.cache`` when unset)."""
    return cache_dir() / "peak_flops.json"


def cache_key(device: torch.device | str, dtype: str, threads: int | None = None) -> str:
    """``"<device name>|threads=<n>|<dtype>"``: one measured peak per machine setting."""
    device = torch.device(device)
    threads = threads if threads is not None else torch.get_num_threads()
    return f"{device_name(device)}|{device.type}|threads={threads}|{dtype}"


def cached_matmul_peak(
    device: torch.device | str = "cpu",
    dtype: str = "fp32",
    *,
    cache_path: Path | None = None,
    measure: Callable[[torch.device, torch.dtype], float] | None = None,
) -> float:
    """The measured matmul peak for this device/threads/dtype, measured at most once.

    The first call measures (``measure(device, torch_dtype)``, default
    :func:`measure_matmul_peak`) and stores the value in the JSON cache; later
    calls read it.
    """
    device = torch.device(device)
    path = cache_path or default_cache_path()
    key = cache_key(device, dtype)
    cache = read_cache(path)
    if key in cache:
        return float(cache[key])
    value = float((measure or measure_matmul_peak)(device, _TORCH_DTYPE[dtype]))
    cache = read_cache(path)  # another process may have written meanwhile
    cache[key] = value
    write_cache(path, cache)
    return value


def refresh_matmul_peak(
    device: torch.device | str = "cpu",
    dtype: str = "fp32",
    *,
    cache_path: Path | None = None,
    measure: Callable[[torch.device, torch.dtype], float] | None = None,
) -> float:
    """Measure the matmul peak again and keep the larger of it and the cached value.

    Called when a run achieved more FLOP/s than the cached peak: that peak was
    measured while other work held the cores (a peak is the best the machine
    can do, so the cache only ever grows).
    """
    device = torch.device(device)
    path = cache_path or default_cache_path()
    key = cache_key(device, dtype)
    value = float((measure or measure_matmul_peak)(device, _TORCH_DTYPE[dtype]))
    cache = read_cache(path)
    value = max(value, float(cache.get(key, 0.0)))
    cache[key] = value
    write_cache(path, cache)
    return value


def read_cache(path: Path) -> dict[str, float]:
    """A JSON cache of measured numbers; empty when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_cache(path: Path, cache: dict[str, float]) -> None:
    """Write the cache atomically (a concurrent reader sees the old or the new file)."""
    atomic_write(path, json.dumps(cache, indent=1, sort_keys=True))


def peak_flops(
    device: torch.device | str,
    precision: str = "32-true",
    *,
    override: float | None = None,
    cache_path: Path | None = None,
    measure: Callable[[torch.device, torch.dtype], float] | None = None,
    name: str | None = None,
) -> tuple[float, str]:
    """``(peak FLOP/s, source)`` for MFU; source: ``override``, ``table``, ``lightning``, ``measured``.

    ``name`` overrides the device name looked up in :data:`KNOWN_PEAKS`.
    """
    if override is not None:
        return float(override), "override"
    device = torch.device(device)
    dtype = compute_dtype(precision)
    if device.type == "cuda":
        value = known_peak(name or device_name(device), dtype)
        if value is not None:
            return value, "table"
        value = lightning_peak(device, dtype)
        if value is not None:
            return value, "lightning"
    return cached_matmul_peak(device, dtype, cache_path=cache_path, measure=measure), "measured"

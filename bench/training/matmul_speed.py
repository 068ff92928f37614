"""Is bf16 autocast faster than fp32 *at this run's matmul shapes*? Measured once, cached.

A square-matrix peak says little about a small model: on a CPU with native
bf16 matmul (``avx512_bf16`` / AMX) the 2048x2048 bf16 peak can be 2x the fp32
one while a ``d_model`` 64 transformer trains slower under bf16 autocast (the
casts and the small GEMMs' overheads outweigh the faster inner kernel). So
``train.precision: auto`` on CPU (:mod:`bench.training.precision`) decides
from the run's own workload (:func:`workload_of`): every ``nn.Linear`` of the
built model at ``batch_size x seq_len`` tokens, forward and backward (the
input and weight gradients), and every attention's
``scaled_dot_product_attention`` at its heads, lengths and head size, each
timed as autocast runs it (fp32 tensors, cast inside the timed region).

:func:`measure_speedup` interleaves fp32 and bf16 rounds and keeps each shape's
fastest time (less noise from other processes); :func:`cached_speedup` stores
the result per device, threads and workload in
``$XDG_CACHE_HOME/bench/bf16_speedup.json``, so a sweep's trials of one shape
measure it once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.diagnostics.throughput.peak import cache_dir, device_name, read_cache, write_cache
from bench.model.attention import Attention


@dataclass(frozen=True)
class LinearShape:
    """``tokens x d_in @ d_in x d_out``: one ``nn.Linear`` applied to a batch."""

    tokens: int
    d_in: int
    d_out: int


@dataclass(frozen=True)
class AttentionShape:
    """``scaled_dot_product_attention`` on ``[batch, heads, q_len | k_len, head_dim]``."""

    batch: int
    heads: int
    q_len: int
    k_len: int
    head_dim: int
    causal: bool


Shape = LinearShape | AttentionShape


@dataclass(frozen=True)
class Workload:
    """The distinct matmul shapes of one training step, each with how often it occurs."""

    shapes: tuple[tuple[Shape, int], ...]

    def key(self) -> str:
        """A short stable digest of the shapes (the cache key's workload part)."""
        text = ";".join(f"{s}x{n}" for s, n in self.shapes)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        """E.g. ``4 linear, 1 attention shapes (largest linear 4096x256x1024)``."""
        linears = [s for s, _ in self.shapes if isinstance(s, LinearShape)]
        n_attn = len(self.shapes) - len(linears)
        big = max(linears, key=lambda s: s.tokens * s.d_in * s.d_out, default=None)
        largest = f" (largest linear {big.tokens}x{big.d_in}x{big.d_out})" if big else ""
        return f"{len(linears)} linear, {n_attn} attention shapes{largest}"


def _attention_modules(model: nn.Module) -> Iterator[tuple[Attention, bool]]:
    """Each attention module with whether it is causal self-attention."""
    stacks = getattr(model, "stacks", None)
    if stacks is None:
        yield from ((m, False) for m in model.modules() if isinstance(m, Attention))
        return
    for stack in stacks():
        for m in stack.modules():
            if isinstance(m, Attention):
                yield m, bool(stack.causal) and not m.cross


def workload_of(model: nn.Module, batch_size: int, seq_len: int) -> Workload:
    """The matmuls a training step of ``model`` runs on ``batch_size x seq_len`` tokens.

    Every ``nn.Linear`` (a tied LM head included) at ``batch_size * seq_len``
    tokens, and every bench :class:`~bench.model.attention.Attention` as one
    SDPA call (``n_heads`` query heads; the K/V heads are expanded); the model
    may live on the ``meta`` device, only its module shapes are read.
    """
    counts: dict[Shape, int] = {}
    tokens = batch_size * seq_len
    for m in model.modules():
        if isinstance(m, nn.Linear):
            shape: Shape = LinearShape(tokens, m.in_features, m.out_features)
            counts[shape] = counts.get(shape, 0) + 1
    for m, causal in _attention_modules(model):
        heads, head_dim = m.n_heads, m.head_dim
        shape = AttentionShape(batch_size, heads, seq_len, seq_len, head_dim, causal)
        counts[shape] = counts.get(shape, 0) + 1
    return Workload(tuple(sorted(counts.items(), key=lambda kv: str(kv[0]))))


def _step_fn(shape: Shape, device: torch.device, dtype: torch.dtype | None) -> Callable[[], None]:
    """Forward + backward of one shape; under bf16 autocast when ``dtype`` is given."""
    gen = torch.Generator().manual_seed(0)

    def leaf(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=gen).to(device).requires_grad_(True)

    if isinstance(shape, LinearShape):
        x, w = leaf(shape.tokens, shape.d_in), leaf(shape.d_out, shape.d_in)
        inputs: tuple[torch.Tensor, ...] = (x, w)

        def forward() -> torch.Tensor:
            return F.linear(x, w)
    else:
        b, h, dh = shape.batch, shape.heads, shape.head_dim
        q, k, v = (
            leaf(b, h, shape.q_len, dh),
            leaf(b, h, shape.k_len, dh),
            leaf(b, h, shape.k_len, dh),
        )
        inputs = (q, k, v)

        def forward() -> torch.Tensor:
            return F.scaled_dot_product_attention(q, k, v, is_causal=shape.causal)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            y = forward()
        y.backward(torch.ones_like(y))
        for t in inputs:
            t.grad = None

    return step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds_per_call(fn: Callable[[], None], device: torch.device, chunk: float) -> float:
    """Seconds per call over a chunk of calls that lasts at least ``chunk`` seconds."""
    reps = 1
    while True:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        _sync(device)
        dt = time.perf_counter() - t0
        if dt >= chunk:
            return dt / reps
        reps *= 2


def measure_speedup(
    workload: Workload,
    device: torch.device | str = "cpu",
    *,
    rounds: int = 5,
    chunk: float = 0.01,
    dtype: torch.dtype = torch.bfloat16,
) -> float:
    """fp32 time / bf16-autocast time of one step's matmuls (> 1: bf16 is faster).

    Each shape is warmed up, then timed in ``rounds`` interleaved fp32 and bf16
    chunks of at least ``chunk`` seconds; each keeps its fastest chunk, and the
    step's time is the sum over shapes weighted by how often each occurs.
    """
    device = torch.device(device)
    total = {"fp32": 0.0, "low": 0.0}
    for shape, count in workload.shapes:
        fns = {"fp32": _step_fn(shape, device, None), "low": _step_fn(shape, device, dtype)}
        for fn in fns.values():
            fn()  # warm-up: kernels chosen, autocast's weight cache, allocator
        best = {name: float("inf") for name in fns}
        for _ in range(rounds):
            for name, fn in fns.items():
                best[name] = min(best[name], _seconds_per_call(fn, device, chunk))
        for name in fns:
            total[name] += count * best[name]
    return total["fp32"] / total["low"]


def default_cache_path() -> Path:
    """``$XDG_CACHE_HOME/bench/bf16_speedup.json``."""
    return cache_dir() / "bf16_speedup.json"


def speedup_key(workload: Workload, device: torch.device | str, threads: int) -> str:
    """``"<device name>|<type>|threads=<n>|<workload digest>"``."""
    device = torch.device(device)
    return f"{device_name(device)}|{device.type}|threads={threads}|{workload.key()}"


def cached_speedup(
    workload: Workload,
    device: torch.device | str = "cpu",
    *,
    threads: int | None = None,
    cache_path: Path | None = None,
    measure: Callable[[Workload, torch.device], float] | None = None,
) -> tuple[float, bool]:
    """``(bf16 speedup, from_cache)`` for this workload, device and thread count.

    Measured (``measure(workload, device)``, default :func:`measure_speedup`)
    with ``threads`` intra-op threads (default: the current number) the first
    time, then read from the JSON cache.
    """
    device = torch.device(device)
    threads = threads or torch.get_num_threads()
    path = cache_path or default_cache_path()
    key = speedup_key(workload, device, threads)
    cached = read_cache(path)
    if key in cached:
        return float(cached[key]), True
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        value = float((measure or measure_speedup)(workload, device))
    finally:
        torch.set_num_threads(before)
    cached = read_cache(path)  # another process may have written meanwhile
    cached[key] = value
    write_cache(path, cached)
    return value, False

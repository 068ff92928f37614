"""``bench throughput``: tokens/s, FLOP/s and the fraction of the matmul peak, side by side.

Not a diagnostic of one run (that is :mod:`bench.diagnostics.throughput`): a plain
PyTorch loop that trains a few steps of several configs in one process, so that
their speeds are compared under the same conditions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from bench.diagnostics.batches import batch_tokens, model_forward
from bench.diagnostics.flops import matmul_params, model_flops_per_token
from bench.diagnostics.peak_memory import peak_memory_mb, reset_peak_memory

if TYPE_CHECKING:
    from rich.console import JustifyMethod


_AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def _synthetic_batch(cfg: Any, device: torch.device, gen: torch.Generator) -> dict[str, Tensor]:
    """Random tokens shaped like the run's batches (decoder or encoder-decoder)."""
    b, t, v = cfg.task.batch_size, cfg.task.seq_len, cfg.model.vocab_size
    ids = torch.randint(0, v, (b, t + 1), generator=gen).to(device)
    if cfg.model.arch == "encoder_decoder":
        src = torch.randint(0, v, (b, t), generator=gen).to(device)
        return {"src": src, "tgt_in": ids[:, :-1], "labels": ids[:, 1:]}
    return {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}


class _Bench:
    """One config of :func:`run_throughput`: model, optimizer, batch and timings."""

    def __init__(self, name: str, cfg: Any, device: torch.device) -> None:
        from bench.model import build_model

        torch.manual_seed(cfg.train.seed)
        self.name, self.cfg, self.device = name, cfg, device
        self.model = build_model(cfg.model).to(device)
        t = cfg.train
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay
        )
        self.batch = _synthetic_batch(cfg, device, torch.Generator().manual_seed(cfg.train.seed))
        # `bench throughput` resolves auto as `bench train` does (bench.training.precision)
        # before it gets here; a direct caller's auto is bf16 autocast on GPU, fp32 on CPU.
        precision = (
            t.precision
            if t.precision != "auto"
            else ("bf16-mixed" if device.type == "cuda" else "32-true")
        )
        self.autocast = _AUTOCAST.get(precision)
        self.train_times: list[float] = []
        self.infer_times: list[float] = []
        self.peak_mem = math.nan

    def row(self, peak: float) -> dict[str, Any]:
        """The config's row of :func:`run_throughput`: its fastest round against ``peak``."""
        cfg = self.cfg
        step, infer = min(self.train_times), min(self.infer_times)
        tokens = batch_tokens(self.batch)
        fpt = model_flops_per_token(cfg.model, cfg.task.seq_len)
        tps = tokens / step
        return {
            "name": self.name,
            "params": sum(p.numel() for p in self.model.parameters()),
            "matmul_params": matmul_params(cfg.model),
            "tokens_per_sec": tps,
            "infer_tokens_per_sec": tokens / infer,
            "step_time": step,
            "infer_step_time": infer,
            "flops_per_token": fpt,
            "flops_per_sec": fpt * tps,
            "frac_peak": fpt * tps / peak,
            "peak_flops": peak,
            "peak_mem_mb": self.peak_mem,
            "threads": torch.get_num_threads(),
        }

    def _ctx(self) -> Any:
        if self.autocast is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast)

    def train_steps(self, n: int) -> float:
        """Seconds per step of ``n`` forward+backward+AdamW steps."""
        self.model.train()
        labels = self.batch["labels"]
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(n):
            with self._ctx():
                logits = model_forward(self.model, self.batch)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        _sync(self.device)
        return (time.perf_counter() - t0) / n

    @torch.inference_mode()
    def infer_steps(self, n: int) -> float:
        """Seconds per forward pass (eval mode, no autograd)."""
        self.model.eval()
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(n):
            with self._ctx():
                model_forward(self.model, self.batch)
        _sync(self.device)
        return (time.perf_counter() - t0) / n


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_throughput(
    configs: list[tuple[str, Any]],
    steps: int = 30,
    warmup: int = 3,
    csv_path: Path | None = None,
    *,
    rounds: int | None = None,
    device: torch.device | str | None = None,
    measure_peak: Callable[[torch.device, torch.dtype], float] | None = None,
) -> list[dict[str, Any]]:
    """Train a few steps of each ``(name, RunConfig)`` side by side in one process.

    A plain PyTorch loop (forward, cross-entropy, backward, AdamW; no Lightning,
    so its per-step overhead is not measured) on random tokens of each config's
    batch size and sequence length. The threads are set once (the first
    config's ``train.threads`` if any), all models live at once, and the timed
    steps are interleaved over ``rounds`` rounds (default: ``steps``, i.e. one
    step per config per round); each config keeps its fastest round, which
    filters out interference from other processes on a shared machine. The fp32 (or, on
    GPU with bf16 autocast, bf16) matmul peak is measured in the same process
    before and after; the higher counts. FLOPs use the 6N + 12 L d T convention
    (:func:`bench.diagnostics.flops.model_flops_per_token`). Peak memory on CPU is the process's peak
    RSS during the config's warm-up (all models resident); on GPU the max
    allocated memory.

    Returns one row per config: name, params, matmul_params, tokens_per_sec,
    infer_tokens_per_sec, step_time, infer_step_time, flops_per_token,
    flops_per_sec, frac_peak, peak_flops, peak_mem_mb, threads. Writes them to
    ``csv_path`` when given. ``measure_peak(device, dtype)`` defaults to
    :func:`bench.diagnostics.peak.measure_matmul_peak`.
    """
    from bench.diagnostics.peak import measure_matmul_peak

    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = next((c.train.threads for _, c in configs if c.train.threads), None)
    if threads:
        torch.set_num_threads(threads)
    benches = [_Bench(name, cfg, dev) for name, cfg in configs]
    peak_dtype = next((b.autocast for b in benches if b.autocast is not None), torch.float32)
    measure = measure_peak or measure_matmul_peak
    peak = measure(dev, peak_dtype)
    rounds = rounds or steps  # default: one step per config per round
    per_round = max(1, steps // rounds)
    for b in benches:
        reset_peak_memory(dev)
        b.train_steps(warmup)
        b.infer_steps(max(1, warmup // 2))
        b.peak_mem = peak_memory_mb(dev)
    for _ in range(rounds):
        for b in benches:
            b.train_times.append(b.train_steps(per_round))
            b.infer_times.append(b.infer_steps(per_round))
    peak = max(peak, measure(dev, peak_dtype))

    rows = [b.row(peak) for b in benches]
    if csv_path is not None:
        _write_csv(Path(csv_path), rows)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    from bench.io import atomic_path

    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["name"])
        writer.writeheader()
        writer.writerows(rows)


# (header, justify, cell)
_COLUMNS: list[tuple[str, JustifyMethod, Callable[[dict[str, Any]], str]]] = [
    ("name", "left", lambda r: str(r["name"])),
    ("params", "right", lambda r: f"{r['params'] / 1e6:.2f}M"),
    ("train tok/s", "right", lambda r: f"{r['tokens_per_sec']:,.0f}"),
    ("infer tok/s", "right", lambda r: f"{r['infer_tokens_per_sec']:,.0f}"),
    ("GFLOP/s", "right", lambda r: f"{r['flops_per_sec'] / 1e9:.1f}"),
    ("% peak", "right", lambda r: f"{100 * r['frac_peak']:.0f}%"),
    ("step ms", "right", lambda r: f"{1e3 * r['step_time']:.1f}"),
    ("peak MB", "right", lambda r: f"{r['peak_mem_mb']:.0f}"),
]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table (rich, no colour) of :func:`run_throughput` rows, the measured peak below."""
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False)
    for header, justify, _ in _COLUMNS:
        table.add_column(header, justify=justify, no_wrap=True)
    for r in rows:
        table.add_row(*(cell(r) for _, _, cell in _COLUMNS))
    out = io.StringIO()
    Console(file=out, width=200, color_system=None, highlight=False).print(table)
    text = out.getvalue().rstrip()
    if rows:
        r = rows[0]
        text += (
            f"\nmatmul peak {r['peak_flops'] / 1e9:.1f} GFLOP/s measured in this process "
            f"({r['threads']} threads); FLOPs per token 6N + 12·L·d·T"
        )
    return text

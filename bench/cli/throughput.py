"""``bench throughput``: tokens/s, FLOP/s and MFU of several configs, side by side.

Not a diagnostic of one run (that is :mod:`bench.diagnostics.throughput.callback`): a plain
PyTorch loop that trains a few steps of several configs in one process, so that
their speeds are compared under the same conditions. It uses the run-time
callback's definitions, so the two agree for one config
(``tools/throughput_agreement.py`` prints the ratio): FLOPs per batch from
:func:`bench.diagnostics.throughput.flops.flops_per_batch`, and each row's peak from
:func:`bench.diagnostics.throughput.peak.peak_flops` for that row's own precision (the
dense table figure of the detected GPU, bf16 under the GPU default
``bf16-mixed``; on CPU the cached matmul peak of that dtype).

Timing: every config is timed in ``rounds`` rounds of ``steps`` steps, the
configs interleaved and their order rotated each round (round ``r`` starts at
config ``r mod n``), so no config always runs first or right after a given
other one. Each row reports the median over its rounds with an order-statistic
confidence interval (:mod:`bench.diagnostics.throughput.median_interval`): on a shared
machine a rate is only told apart from another when their intervals do not
overlap.
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
from bench.diagnostics.throughput.flops import flops_per_batch, matmul_params
from bench.diagnostics.throughput.median_interval import (
    MIN_ROUNDS,
    MedianInterval,
    median_interval,
)
from bench.diagnostics.throughput.peak import compute_dtype, matmul_dtype, peak_flops
from bench.diagnostics.throughput.peak_memory import peak_memory_mb, reset_peak_memory

if TYPE_CHECKING:
    from rich.console import JustifyMethod


DEFAULT_ROUNDS = 9  # the interval [2nd smallest, 2nd largest] covers the median with 96%
_AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def _synthetic_batch(cfg: Any, device: torch.device, gen: torch.Generator) -> dict[str, Tensor]:
    """Random tokens shaped like the run's batches (decoder or encoder-decoder)."""
    b, t, v = cfg.task.batch_size, cfg.task.seq_len, cfg.model.vocab_size
    ids = torch.randint(0, v, (b, t + 1), generator=gen).to(device)
    if cfg.model.arch == "encoder_decoder":
        src = torch.randint(0, v, (b, t), generator=gen).to(device)
        return {"src": src, "tgt_in": ids[:, :-1], "labels": ids[:, 1:]}
    return {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}


def run_precision(cfg: Any, device: torch.device) -> str:
    """The Lightning precision a run of ``cfg`` uses on ``device``.

    ``bench throughput`` resolves ``auto`` as ``bench train`` does
    (:mod:`bench.training.precision`) before it gets here; a direct caller's
    ``auto`` is bf16 autocast on GPU, fp32 on CPU.
    """
    precision = str(cfg.train.precision)
    if precision == "auto":
        return "bf16-mixed" if device.type == "cuda" else "32-true"
    return precision


def row_peak(
    cfg: Any,
    device: torch.device,
    *,
    cache_path: Path | None = None,
    measure: Callable[[torch.device, torch.dtype], float] | None = None,
) -> tuple[float, str]:
    """``(peak FLOP/s, source)`` a row of ``cfg`` is divided by: the callback's peak for its precision."""
    return peak_flops(
        device,
        run_precision(cfg, device),
        override=cfg.diagnostics.peak_flops,
        cache_path=cache_path,
        measure=measure,
    )


class _Bench:
    """One config of :func:`run_throughput`: model, optimizer, batch, peak and timings."""

    def __init__(self, name: str, cfg: Any, device: torch.device) -> None:
        from bench.model import build_model
        from bench.model.sdpa_kernels import kernel_summary

        torch.manual_seed(cfg.train.seed)
        self.name, self.cfg, self.device = name, cfg, device
        self.model = build_model(cfg.model).to(device)
        t = cfg.train
        self.opt = torch.optim.AdamW(
            self.model.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), weight_decay=t.weight_decay
        )
        self.batch = _synthetic_batch(cfg, device, torch.Generator().manual_seed(cfg.train.seed))
        self.tokens = batch_tokens(self.batch)
        self.precision = run_precision(cfg, device)
        self.autocast = _AUTOCAST.get(self.precision)
        self.flops_per_batch = flops_per_batch(cfg.model, self.batch)
        self.kernels = kernel_summary(
            cfg.model, cfg.task.seq_len, device, matmul_dtype(self.precision)
        )
        self.peak, self.peak_source = math.nan, ""
        self.train_rates: list[float] = []  # tokens/s of each round
        self.infer_rates: list[float] = []
        self.peak_mem = math.nan

    def row(self) -> dict[str, Any]:
        """The config's row of :func:`run_throughput`: medians over its rounds, against its peak."""
        cfg = self.cfg
        train, infer = self.train_interval(), median_interval(self.infer_rates)
        tps = train.median
        fps = self.flops_per_batch / self.tokens * tps
        return {
            "name": self.name,
            "params": sum(p.numel() for p in self.model.parameters()),
            "matmul_params": matmul_params(cfg.model),
            "tokens_per_sec": tps,
            "tokens_per_sec_low": train.low,
            "tokens_per_sec_high": train.high,
            "interval_coverage": train.coverage,
            "rounds": train.n,
            "infer_tokens_per_sec": infer.median,
            "step_time": self.tokens / tps,
            "infer_step_time": self.tokens / infer.median,
            "flops_per_token": self.flops_per_batch / self.tokens,
            "flops_per_sec": fps,
            "frac_peak": fps / self.peak,
            "frac_peak_low": fps / tps * train.low / self.peak,
            "frac_peak_high": fps / tps * train.high / self.peak,
            "peak_flops": self.peak,
            "peak_dtype": compute_dtype(self.precision),
            "peak_source": self.peak_source,
            "sdpa_kernel": "; ".join(
                k if len(self.kernels) == 1 else f"{role}: {k}" for role, k in self.kernels.items()
            ),
            "peak_mem_mb": self.peak_mem,
            "threads": torch.get_num_threads(),
        }

    def train_interval(self) -> MedianInterval:
        """Median training tokens/s over the rounds, with its interval."""
        return median_interval(self.train_rates)

    def _ctx(self) -> Any:
        if self.autocast is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast)

    def train_steps(self, n: int) -> float:
        """Tokens/s of ``n`` forward+backward+clip+AdamW steps (what a run's step does)."""
        self.model.train()
        labels = self.batch["labels"]
        clip = self.cfg.train.grad_clip
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(n):
            with self._ctx():
                logits = model_forward(self.model, self.batch)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        _sync(self.device)
        return n * self.tokens / (time.perf_counter() - t0)

    @torch.inference_mode()
    def infer_steps(self, n: int) -> float:
        """Tokens/s of ``n`` forward passes (eval mode, no autograd)."""
        self.model.eval()
        _sync(self.device)
        t0 = time.perf_counter()
        for _ in range(n):
            with self._ctx():
                model_forward(self.model, self.batch)
        _sync(self.device)
        return n * self.tokens / (time.perf_counter() - t0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def round_order(n: int, r: int) -> list[int]:
    """The order of ``n`` configs in round ``r``: rotated by ``r`` (each leads equally often)."""
    return [(r + i) % n for i in range(n)]


def run_throughput(
    configs: list[tuple[str, Any]],
    steps: int = 3,
    warmup: int = 3,
    csv_path: Path | None = None,
    *,
    rounds: int = DEFAULT_ROUNDS,
    device: torch.device | str | None = None,
    measure_peak: Callable[[torch.device, torch.dtype], float] | None = None,
    cache_path: Path | None = None,
) -> list[dict[str, Any]]:
    """Train ``steps`` steps of each ``(name, RunConfig)`` per round, for ``rounds`` rounds.

    A plain PyTorch loop (forward, cross-entropy, backward, gradient clipping,
    AdamW; no Lightning, so its per-step overhead is not measured) on random
    tokens of each config's batch size and sequence length. The threads are
    set once (the first config's ``train.threads`` if any), all models live at
    once, each is warmed up, then the rounds interleave the configs in a
    rotated order (:func:`round_order`). Peak memory on CPU is the process's
    peak RSS during the config's warm-up (all models resident); on GPU the max
    allocated memory. Each row's peak comes from :func:`row_peak`
    (``measure_peak`` and ``cache_path`` go to :func:`~bench.diagnostics.throughput.peak.peak_flops`).

    Returns one row per config, in the given order: name, params,
    matmul_params, tokens_per_sec (median) with tokens_per_sec_low/high (its
    interval) and interval_coverage, rounds, infer_tokens_per_sec,
    step_time, infer_step_time, flops_per_token, flops_per_sec, frac_peak
    (with frac_peak_low/high), peak_flops, peak_dtype, peak_source,
    sdpa_kernel, peak_mem_mb, threads. Writes them to ``csv_path`` when given.
    """
    if rounds < MIN_ROUNDS:
        raise ValueError(f"rounds={rounds}: at least {MIN_ROUNDS} are needed for an interval")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = next((c.train.threads for _, c in configs if c.train.threads), None)
    if threads:
        torch.set_num_threads(threads)
    benches = [_Bench(name, cfg, dev) for name, cfg in configs]
    for b in benches:  # threads are set: the cached peak of this setting
        b.peak, b.peak_source = row_peak(b.cfg, dev, cache_path=cache_path, measure=measure_peak)
    for b in benches:
        reset_peak_memory(dev)
        b.train_steps(warmup)
        b.infer_steps(max(1, warmup // 2))
        b.peak_mem = peak_memory_mb(dev)
    for r in range(rounds):
        for i in round_order(len(benches), r):
            benches[i].train_rates.append(benches[i].train_steps(steps))
            benches[i].infer_rates.append(benches[i].infer_steps(steps))
    rows = [b.row() for b in benches]
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
    (
        "interval",
        "right",
        lambda r: f"[{r['tokens_per_sec_low']:,.0f}, {r['tokens_per_sec_high']:,.0f}]",
    ),
    ("infer tok/s", "right", lambda r: f"{r['infer_tokens_per_sec']:,.0f}"),
    ("GFLOP/s", "right", lambda r: f"{r['flops_per_sec'] / 1e9:.1f}"),
    ("MFU", "right", lambda r: f"{100 * r['frac_peak']:.1f}%"),
    ("peak", "right", lambda r: f"{r['peak_dtype']} {r['peak_flops'] / 1e9:,.1f}G"),
    ("step ms", "right", lambda r: f"{1e3 * r['step_time']:.1f}"),
    ("peak MB", "right", lambda r: f"{r['peak_mem_mb']:.0f}"),
    ("SDPA kernel", "left", lambda r: str(r["sdpa_kernel"])),
]

_SOURCES = {
    "table": "the GPU's dense datasheet figure",
    "lightning": "Lightning's figure for this GPU",
    "measured": "the matmul peak measured once and cached",
    "override": "diagnostics.peak_flops",
}


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table (rich, no colour) of :func:`run_throughput` rows, the peaks below."""
    import io

    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False)
    for header, justify, _ in _COLUMNS:
        table.add_column(header, justify=justify, no_wrap=True)
    for r in rows:
        table.add_row(*(cell(r) for _, _, cell in _COLUMNS))
    out = io.StringIO()
    Console(file=out, width=240, color_system=None, highlight=False).print(table)
    text = out.getvalue().rstrip()
    if rows:
        r = rows[0]
        peaks = sorted({(x["peak_dtype"], x["peak_flops"], x["peak_source"]) for x in rows})
        listed = "; ".join(
            f"{dtype} {value / 1e9:,.1f} GFLOP/s ({_SOURCES.get(source, source)})"
            for dtype, value, source in peaks
        )
        text += (
            f"\ntok/s: median of {r['rounds']} interleaved rounds, interval covering the median "
            f"with {100 * r['interval_coverage']:.0f}% (order statistics)"
            f"\nMFU: FLOP/s over the peak of the row's dtype: {listed}; "
            f"{r['threads']} threads; FLOPs counted by torch's FlopCounterMode (6N + 12·L·d·T)"
        )
    return text

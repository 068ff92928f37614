"""Throughput: FLOPs per token, tokens/s, MFU against a known or measured peak, memory.

FLOPs convention (PaLM, Chowdhery et al. 2022, Appendix B): training costs
``6 N + 12 L d T`` FLOPs per token, inference ``2 N + 4 L d T``, where

- ``N`` = the weights of every matrix multiply: all attention and feed-forward
  projections plus the output projection ``d_model x vocab`` (counted even when
  tied to the input embedding, because the unembedding matmul is real work).
  Embedding lookups, biases and norm gains are not counted (no matmul). This is
  what ``torch.utils.flop_counter`` measures; it differs from Kaplan et al.'s
  "non-embedding N" by the ``d_model x vocab`` head.
- ``12 L d T``: the attention scores ``QK^T`` and ``AV`` over the full ``T x T``
  square (no halving for the causal mask, as in PaLM and ``measure_flops``),
  with ``d`` = ``n_heads * head_dim`` = ``d_model``.

For an encoder-decoder (source length S, target length T) the FLOPs are per
token of source + target: encoder blocks run on S tokens, decoder blocks and
the head on T, cross-attention K/V projections on S, cross-attention scores
over ``T x S``.

Excluding diagnostics from timings: any heavy diagnostic wraps its work in
``with exclude_from_throughput(): ...``; :class:`ThroughputDiagnostics`
subtracts the time spent inside such blocks from the step it falls into.

Logged keys: ``throughput/tokens_per_sec``, ``throughput/step_time`` (s),
``throughput/flops_per_sec``, ``throughput/mfu``, ``throughput/peak_mem_mb``,
``throughput/infer_tokens_per_sec``, ``throughput/peak_flops``.
"""

from __future__ import annotations

import contextlib
import math
import resource
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.throughput import Throughput, measure_flops
from torch import Tensor, nn

from bench.config import DiagnosticsConfig, ModelConfig
from bench.diagnostics.peak import peak_flops

# ----------------------------------------------------------------------------- excluded time


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
            _sync_cuda()  # queued training kernels belong to the training step
            self._t0 = self.clock()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                _sync_cuda()
                self.total += self.clock() - self._t0


DIAGNOSTICS_TIME = Stopwatch()


def exclude_from_throughput() -> Any:
    """Context manager: time spent inside is not counted as training time.

    Usage in a heavy callback: ``with exclude_from_throughput(): run_hessian(...)``.
    """
    return DIAGNOSTICS_TIME.exclude()


def _sync_cuda() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


# ----------------------------------------------------------------------------- FLOPs


def _block_params(cfg: ModelConfig, cross: bool) -> tuple[int, int]:
    """Matmul weights of one block: (applied to the block's own tokens, to the memory)."""
    d, q, kv = cfg.d_model, cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    n_in = 2 if cfg.ffn == "swiglu" else 1
    attn = d * q + 2 * d * kv + q * d
    ffn = (n_in + 1) * d * cfg.ffn_dim
    if not cross:
        return attn + ffn, 0
    return attn + (d * q + q * d) + ffn, 2 * d * kv  # cross q/out on own tokens, k/v on memory


def matmul_params(cfg: ModelConfig) -> int:
    """``N`` of the FLOPs convention: weights of every matmul, head included."""
    head = cfg.d_model * cfg.vocab_size
    if cfg.arch == "decoder":
        return cfg.n_layers * _block_params(cfg, False)[0] + head
    own, mem = _block_params(cfg, True)
    return cfg.encoder_layers * _block_params(cfg, False)[0] + cfg.n_layers * (own + mem) + head


def model_flops_per_token(
    cfg: ModelConfig, seq_len: int, *, training: bool = True, src_len: int | None = None
) -> float:
    """Analytic FLOPs per token: ``6N + 12 L d T`` (training) or ``2N + 4 L d T`` (forward).

    ``seq_len`` is T; for an encoder-decoder ``src_len`` is S (default T) and the
    result is per source + target token. See the module docstring.
    """
    mult = 3 if training else 1  # backward = 2x forward
    d, t = cfg.n_heads * cfg.head_dim, seq_len
    if cfg.arch == "decoder":
        fwd = 2 * matmul_params(cfg) + 4 * cfg.n_layers * d * t
        return float(mult * fwd)
    s = src_len or seq_len
    enc_own = _block_params(cfg, False)[0]
    dec_own, dec_mem = _block_params(cfg, True)
    head = cfg.d_model * cfg.vocab_size
    matmul = (
        s * cfg.encoder_layers * enc_own
        + t * (cfg.n_layers * dec_own + head)
        + s * cfg.n_layers * dec_mem
    )
    scores = cfg.encoder_layers * s * s + cfg.n_layers * (t * t + t * s)
    fwd = 2 * matmul + 4 * d * scores
    return float(mult * fwd) / (s + t)


# Batch keys -> how the model is called and which tensors count as tokens.
BATCH_KINDS: dict[str, dict[str, Any]] = {
    "src": {
        "forward": lambda m, b: m(b["src"], b["tgt_in"], b.get("src_pad")),
        "tokens": ("src", "tgt_in"),
    },
    "input_ids": {
        "forward": lambda m, b: m(b["input_ids"], b.get("pad_mask")),
        "tokens": ("input_ids",),
    },
}


def _kind(batch: Mapping[str, Any]) -> dict[str, Any]:
    for key, kind in BATCH_KINDS.items():
        if key in batch:
            return kind
    raise ValueError(
        f"unknown batch layout with keys {sorted(batch)}; expected one of {sorted(BATCH_KINDS)}"
    )


def model_forward(model: nn.Module, batch: Mapping[str, Tensor]) -> Tensor:
    """Logits of ``model`` for a bench batch of either architecture."""
    return _kind(batch)["forward"](model, batch)


def batch_tokens(batch: Mapping[str, Tensor]) -> int:
    """Tokens a batch feeds the model (source + target for an encoder-decoder)."""
    return sum(int(batch[k].numel()) for k in _kind(batch)["tokens"])


def measured_flops_per_batch(
    cfg: ModelConfig, batch: Mapping[str, Tensor], *, training: bool = True
) -> int:
    """FLOPs of one forward (+ backward when ``training``) counted by ``measure_flops``.

    The model is built on the meta device and fed meta tensors of the batch's
    shapes, so this costs no memory and no compute.
    """
    from bench.model import build_model

    with torch.device("meta"):
        model = build_model(cfg)
    meta = {
        k: torch.empty_like(v, device="meta") if isinstance(v, Tensor) else v
        for k, v in batch.items()
    }
    model.train(training)
    loss_fn: Callable[[Tensor], Tensor] | None = (lambda y: y.sum()) if training else None
    return int(measure_flops(model, lambda: model_forward(model, meta), loss_fn))


# ----------------------------------------------------------------------------- memory


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


# ----------------------------------------------------------------------------- callback


class ThroughputDiagnostics(L.Callback):
    """Training and inference throughput, MFU and peak memory of a run.

    Step time runs from ``on_train_batch_start`` to ``on_train_batch_end`` minus
    time spent in :func:`exclude_from_throughput` blocks (other diagnostics),
    so data loading, validation, checkpoints and diagnostics are not counted.
    FLOPs per batch come from :func:`measured_flops_per_batch` on the first
    batch's shapes (meta device). Rates are rolling averages over ``window``
    steps after ``warmup`` steps, computed by Lightning's ``Throughput`` (the
    engine of its ``ThroughputMonitor``, which cannot exclude diagnostics time),
    and logged each step with ``pl_module.log`` (Lightning thins them to
    ``log_every_n_steps``; ``trainer.callback_metrics`` holds the latest).
    Inference tokens/s is measured on the first validation loader (training
    length), forward only. :meth:`summary` gives whole-run averages.

    The peak is ``cfg.peak_flops`` if set, else :func:`bench.diagnostics.peak.peak_flops`.
    ``model_cfg`` defaults to ``pl_module.cfg.model``.
    """

    def __init__(
        self,
        cfg: DiagnosticsConfig,
        *,
        model_cfg: ModelConfig | None = None,
        warmup: int = 3,
        window: int = 20,
        cache_path: Path | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.cfg, self.model_cfg = cfg, model_cfg
        self.warmup, self.window, self.cache_path = warmup, window, cache_path
        self.peak: float | None = None
        self.peak_source = ""
        self.flops_per_batch: int | None = None
        self._meter: Throughput | None = None
        self._t0 = self._ex0 = 0.0
        self._seen = 0
        self._time = 0.0
        self._tokens = self._samples = self._batches = 0
        self._val_time = 0.0
        self._val_tokens = 0
        self._last: dict[str, float] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        device = pl_module.device
        self.peak, self.peak_source = peak_flops(
            device, str(trainer.precision), override=self.cfg.peak_flops, cache_path=self.cache_path
        )
        remaining = (trainer.max_steps if trainer.max_steps > 0 else 10**9) - trainer.global_step
        window = max(2, min(self.window, remaining - self.warmup))
        self._meter = Throughput(available_flops=self.peak, window_size=window)
        self._seen = self._batches = self._tokens = self._samples = 0
        self._time = 0.0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        _sync_cuda()
        self._t0, self._ex0 = self.clock(), DIAGNOSTICS_TIME.total

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        _sync_cuda()
        dt = self.clock() - self._t0 - (DIAGNOSTICS_TIME.total - self._ex0)
        self._seen += 1
        if self.flops_per_batch is None:
            self.flops_per_batch = self._flops(pl_module, batch)
        if self._seen <= self.warmup or self._meter is None:
            return
        self._batches += 1
        self._samples += _batch_size(batch)
        self._tokens += batch_tokens(batch)
        self._time += max(dt, 1e-9)
        self._meter.update(
            time=self._time,
            batches=self._batches,
            samples=self._samples,
            lengths=self._tokens,
            flops=self.flops_per_batch or None,
        )
        m = self._meter.compute()
        if "device/batches_per_sec" not in m:
            return  # window not full yet
        out = {
            "throughput/tokens_per_sec": m["device/items_per_sec"],
            "throughput/step_time": 1.0 / m["device/batches_per_sec"],
            "throughput/peak_mem_mb": peak_memory_mb(pl_module.device),
            "throughput/peak_flops": float(self.peak or math.nan),
        }
        if "device/flops_per_sec" in m:
            out["throughput/flops_per_sec"] = m["device/flops_per_sec"]
            out["throughput/mfu"] = m.get("device/mfu", math.nan)
        self._last.update(out)
        for k, v in out.items():
            pl_module.log(k, v, on_step=True, on_epoch=False, batch_size=1)

    def on_validation_batch_start(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        _sync_cuda()
        self._t0, self._ex0 = self.clock(), DIAGNOSTICS_TIME.total

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if dataloader_idx != 0 or batch_idx == 0:  # first batch: warm-up
            return
        _sync_cuda()
        self._val_time += self.clock() - self._t0 - (DIAGNOSTICS_TIME.total - self._ex0)
        self._val_tokens += batch_tokens(batch)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._val_time > 0:
            value = self._val_tokens / self._val_time
            self._last["throughput/infer_tokens_per_sec"] = value
            pl_module.log("throughput/infer_tokens_per_sec", value, batch_size=1)

    def summary(self) -> dict[str, float]:
        """Whole-run averages after warm-up (the latest value for memory and inference)."""
        out = dict(self._last)
        if self._time > 0:
            out["throughput/tokens_per_sec"] = self._tokens / self._time
            out["throughput/step_time"] = self._time / self._batches
            if self.flops_per_batch:
                fps = self.flops_per_batch * self._batches / self._time
                out["throughput/flops_per_sec"] = fps
                out["throughput/mfu"] = fps / self.peak if self.peak else math.nan
        return out

    def _flops(self, pl_module: L.LightningModule, batch: Any) -> int:
        cfg = self.model_cfg or getattr(getattr(pl_module, "cfg", None), "model", None)
        if cfg is None or not isinstance(batch, Mapping):
            return 0
        with exclude_from_throughput():
            try:
                return measured_flops_per_batch(cfg, batch, training=True)
            except Exception as e:  # never fail training over a FLOP count
                warnings.warn(f"measure_flops failed ({e}); using the analytic FLOPs", stacklevel=2)
                t = batch_tokens(batch)
                seq = int(next(iter(batch.values())).shape[1])
                return int(model_flops_per_token(cfg, seq) * t)


def _batch_size(batch: Any) -> int:
    if isinstance(batch, Mapping):
        return int(next(v for v in batch.values() if isinstance(v, Tensor)).shape[0])
    return int(batch.shape[0])


# ----------------------------------------------------------------------------- `bench throughput`

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
        precision = (
            t.precision
            if t.precision != "auto"
            else ("bf16-mixed" if device.type == "cuda" else "32-true")
        )
        self.autocast = _AUTOCAST.get(precision)
        self.train_times: list[float] = []
        self.infer_times: list[float] = []
        self.peak_mem = math.nan

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
    (:func:`model_flops_per_token`). Peak memory on CPU is the process's peak
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

    rows = []
    for b in benches:
        cfg = b.cfg
        step, infer = min(b.train_times), min(b.infer_times)
        tokens = batch_tokens(b.batch)
        fpt = model_flops_per_token(cfg.model, cfg.task.seq_len)
        tps = tokens / step
        rows.append(
            {
                "name": b.name,
                "params": sum(p.numel() for p in b.model.parameters()),
                "matmul_params": matmul_params(cfg.model),
                "tokens_per_sec": tps,
                "infer_tokens_per_sec": tokens / infer,
                "step_time": step,
                "infer_step_time": infer,
                "flops_per_token": fpt,
                "flops_per_sec": fpt * tps,
                "frac_peak": fpt * tps / peak,
                "peak_flops": peak,
                "peak_mem_mb": b.peak_mem,
                "threads": torch.get_num_threads(),
            }
        )
    if csv_path is not None:
        _write_csv(Path(csv_path), rows)
    return rows


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["name"])
        writer.writeheader()
        writer.writerows(rows)


_COLUMNS: list[tuple[str, str, Callable[[dict[str, Any]], str]]] = [
    ("name", "<", lambda r: str(r["name"])),
    ("params", ">", lambda r: f"{r['params'] / 1e6:.2f}M"),
    ("train tok/s", ">", lambda r: f"{r['tokens_per_sec']:,.0f}"),
    ("infer tok/s", ">", lambda r: f"{r['infer_tokens_per_sec']:,.0f}"),
    ("GFLOP/s", ">", lambda r: f"{r['flops_per_sec'] / 1e9:.1f}"),
    ("% peak", ">", lambda r: f"{100 * r['frac_peak']:.0f}%"),
    ("step ms", ">", lambda r: f"{1e3 * r['step_time']:.1f}"),
    ("peak MB", ">", lambda r: f"{r['peak_mem_mb']:.0f}"),
]


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`run_throughput` rows, with the measured peak below."""
    cells = [[fmt(r) for _, _, fmt in _COLUMNS] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (h, _, _) in enumerate(_COLUMNS)]

    def line(values: list[str]) -> str:
        return "  ".join(
            f"{v:{a}{w}}" for v, (_, a, _), w in zip(values, _COLUMNS, widths, strict=True)
        )

    out = [line([h for h, _, _ in _COLUMNS]), line(["-" * w for w in widths])]
    out += [line(c) for c in cells]
    if rows:
        r = rows[0]
        out.append(
            f"matmul peak {r['peak_flops'] / 1e9:.1f} GFLOP/s measured in this process "
            f"({r['threads']} threads); FLOPs per token 6N + 12·L·d·T"
        )
    return "\n".join(out)

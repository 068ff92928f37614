"""Training tokens/s of bench against two peers in one harness, at fp32 and bf16 autocast.

Issue 15, item 1's targets: bench at bf16 >= 2x the fastest fp32 peer, bench at
fp32 >= 1.0x the fastest peer, on this machine. The peers are the same
architecture as bench's defaults (pre-LN LayerNorm, learned positions, GELU FFN
4x, tied embeddings, biases, no dropout):

- ``nanogpt``: a nanoGPT-style model written here (Karpathy's ``model.py``:
  fused ``c_attn``, ``scaled_dot_product_attention(is_causal=True)``, ``c_fc`` /
  ``c_proj`` MLP, ``ln_f``, tied ``lm_head``);
- ``torch-encoder``: ``torch.nn.TransformerEncoder`` (``norm_first=True``, a causal
  mask) between the same embeddings and head.

Every model trains in the same loop (forward, cross-entropy in fp32, backward,
AdamW) on the same random tokens; the timed steps are interleaved over
``--rounds`` rounds, each model keeps its fastest round (less noise from other
processes on a shared machine). Also prints what ``train.precision: auto`` would
pick for bench at this shape and the bf16 speedup measured at its matmul shapes.
Run it alone (``flock /tmp/bench-measure.lock python tools/peer_throughput.py``):

    python tools/peer_throughput.py [--batch 16] [--seq 256] [--rounds 5] [--steps 2]
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.config import RunConfig, build_run_config
from bench.diagnostics.throughput.peak import device_name
from bench.model import build_model
from bench.training.matmul_speed import measure_speedup
from bench.training.precision import BF16_MIN_SPEEDUP, run_workload

# ----------------------------------------------------------------------------- nanoGPT-style


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))


class MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class NanoBlock(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(d), CausalSelfAttention(d, heads)
        self.ln_2, self.mlp = nn.LayerNorm(d), MLP(d)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, vocab: int, seq: int, d: int, layers: int, heads: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        self.h = nn.ModuleList(NanoBlock(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # nanoGPT's scaled residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """nanoGPT's ``GPT._init_weights``: N(0, 0.02) weights and embeddings, zero biases."""
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: Tensor) -> Tensor:
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.wte(ids) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


# ----------------------------------------------------------------------------- torch encoder


class TorchEncoderLM(nn.Module):
    def __init__(self, vocab: int, seq: int, d: int, layers: int, heads: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(seq, d)
        layer = nn.TransformerEncoderLayer(
            d, heads, 4 * d, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq))

    def forward(self, ids: Tensor) -> Tensor:
        t = ids.shape[1]
        x = self.wte(ids) + self.wpe(torch.arange(t, device=ids.device))
        mask: Tensor = self.get_buffer("mask")
        x = self.encoder(x, mask=mask[:t, :t], is_causal=True)
        return self.lm_head(self.ln_f(x))


# ----------------------------------------------------------------------------- the harness


@dataclass
class Entry:
    """One model at one precision, with its optimizer and timed rounds."""

    name: str
    model: nn.Module
    forward: Callable[[Tensor], Tensor]
    dtype: torch.dtype | None  # autocast dtype; None: fp32
    times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=0.1)

    def steps(self, ids: Tensor, labels: Tensor, n: int) -> float:
        """Seconds per training step over ``n`` steps."""
        t0 = time.perf_counter()
        for _ in range(n):
            with torch.autocast("cpu", dtype=self.dtype or torch.float32, enabled=bool(self.dtype)):
                logits = self.forward(ids)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten())
            loss.backward()
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        return (time.perf_counter() - t0) / n


def bench_config(args: argparse.Namespace) -> RunConfig:
    return build_run_config(
        overrides={
            "model.d_model": args.d_model,
            "model.n_layers": args.layers,
            "model.n_heads": args.heads,
            "model.max_len": args.seq,
            "model.vocab_size": args.vocab,
            "model.norm_placement": "pre",
            "model.norm_type": "layernorm",
            "model.pos_encoding": "learned",
            "model.ffn": "gelu",
            "model.dropout": 0.0,
            "model.bias": True,
            "model.tie_embeddings": True,
            "task.seq_len": args.seq,
            "task.batch_size": args.batch,
            "train.threads": args.threads,
        }
    )


def entries(args: argparse.Namespace) -> list[Entry]:
    shape = (args.vocab, args.seq, args.d_model, args.layers, args.heads)
    torch.manual_seed(0)
    nano, encoder = NanoGPT(*shape), TorchEncoderLM(*shape)
    bench32, bench16 = (build_model(bench_config(args).model) for _ in range(2))
    out = [
        Entry("nanogpt fp32", nano, nano, None),
        Entry("torch-encoder fp32", encoder, encoder, None),
        Entry("bench fp32", bench32, bench32, None),
        Entry("bench bf16", bench16, bench16, torch.bfloat16),
    ]
    if args.peers_bf16:
        nano16, enc16 = NanoGPT(*shape), TorchEncoderLM(*shape)
        out += [
            Entry("nanogpt bf16", nano16, nano16, torch.bfloat16),
            Entry("torch-encoder bf16", enc16, enc16, torch.bfloat16),
        ]
    return out


def add_shape_args(p: argparse.ArgumentParser) -> None:
    """The model and batch shape options, the issue's configuration by default."""
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--vocab", type=int, default=256)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_shape_args(p)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2, help="timed steps per model per round")
    p.add_argument("--peers-bf16", action="store_true", help="also time the peers under bf16")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(0)
    data = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=gen)
    ids, labels = data[:, :-1], data[:, 1:]
    models = entries(args)
    for e in models:
        e.steps(ids, labels, 1)  # warm-up: kernels, allocator, AdamW state
    for _ in range(args.rounds):
        for e in models:
            e.times.append(e.steps(ids, labels, args.steps))

    tokens = args.batch * args.seq
    tok_s = {e.name: tokens / min(e.times) for e in models}
    fastest_fp32_peer = max(
        v for k, v in tok_s.items() if not k.startswith("bench") and "fp32" in k
    )
    print(
        f"d_model {args.d_model}, {args.layers} layers, {args.heads} heads, seq {args.seq}, "
        f"batch {args.batch}, vocab {args.vocab}; {args.threads} threads; {args.rounds} rounds "
        f"x {args.steps} steps; torch {torch.__version__}; {device_name('cpu')}"
    )
    print(f"{'model':<20} {'tok/s':>9} {'vs fastest fp32 peer':>21} {'spread':>7}")
    for e in models:
        spread = (max(e.times) - min(e.times)) / min(e.times)
        ratio = tok_s[e.name] / fastest_fp32_peer
        print(f"{e.name:<20} {tok_s[e.name]:>9,.0f} {ratio:>20.2f}x {100 * spread:>6.0f}%")
    speedup = measure_speedup(run_workload(bench_config(args)))
    pick = "bf16-mixed" if speedup >= BF16_MIN_SPEEDUP else "32-true"
    print(
        f"bench bf16 / bench fp32: {tok_s['bench bf16'] / tok_s['bench fp32']:.2f}x end to end; "
        f"at bench's matmul shapes bf16 measured {speedup:.2f}x fp32 -> auto picks {pick}"
    )
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if all(math.isfinite(v) for v in tok_s.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

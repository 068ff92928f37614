"""Will a run fit this machine? Checked before anything is allocated or written.

:func:`estimate_memory` gives an upper-end estimate, in bytes, of what a run
holds at its peak, from the config alone (no model is built):

- parameters and optimizer state: 16 bytes a parameter (fp32 weight, gradient
  and AdamW's two moments);
- activations: the training step's, kept for backward, with the Korthikanti et
  al. 2022 ("Reducing Activation Recomputation in Large Transformer Models")
  count of ``34·d + 5·h·T`` bytes per token and layer in 16-bit, doubled for
  fp32, plus the logits and their gradient; evaluation at the longest length
  (no backward) when that is larger;
- data: every example the task materialises (train plus each validation tier)
  as int64 token tensors with per-tensor overhead.

:func:`check_fits` refuses, in one line, a run whose estimate exceeds the
memory available on its device (``MemAvailable`` of ``/proc/meminfo`` on CPU,
``torch.cuda.mem_get_info`` on a GPU), and more processes than the CPU slots
(``os.sched_getaffinity``) or GPUs there are to run them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.config import ConfigError, RunConfig
from bench.training.cluster import processes_here

BYTES_PER_PARAM = 16  # fp32 weight + grad + AdamW exp_avg + exp_avg_sq
TENSOR_OVERHEAD = 160  # bytes of a small CPU tensor object besides its data
VOCAB_BOUND = 512  # tasks set model.vocab_size later; none exceeds this (text: 260)


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs at its peak, by where they go."""

    params: int  # number of parameters
    state: int  # parameters + gradients + optimizer state, bytes
    activations: int
    data: int

    @property
    def total(self) -> int:
        return self.state + self.activations + self.data


def count_params(cfg: RunConfig) -> int:
    """Parameters of the model ``cfg.model`` describes (biases and norms included)."""
    m = cfg.model
    d, f = m.d_model, m.ffn_dim
    vocab = max(m.vocab_size, VOCAB_BOUND)
    kv = m.kv_heads * m.head_dim
    attn = d * (d + 2 * kv) + d * d + 4 * d  # q, k, v, out (+ biases)
    ffn = (3 if m.ffn == "swiglu" else 2) * d * f + f + d
    norms = 6 * d
    layers = m.n_layers + (m.encoder_layers if m.arch == "encoder_decoder" else 0)
    cross = (attn + 2 * d) * m.n_layers if m.arch == "encoder_decoder" else 0
    embed = vocab * d * (1 if m.tie_embeddings else 2)
    pos = m.max_len * d if m.pos_encoding == "learned" else 0
    sinks = m.sink_tokens * d  # the attention-sink vectors (model.sink_tokens)
    return layers * (attn + ffn + norms) + cross + embed + pos + sinks + 2 * d


def _longest(cfg: RunConfig, scale: int) -> int:
    """Tokens of the longest sequence at ``scale`` x seq_len (prompt, separator, answer)."""
    return 2 * cfg.task.seq_len * scale + 2


def estimate_memory(cfg: RunConfig) -> MemoryEstimate:
    """An upper-end estimate of the run's peak memory on its device (see the module doc)."""
    m, t = cfg.model, cfg.task
    n = count_params(cfg)
    vocab = max(m.vocab_size, VOCAB_BOUND)
    layers = m.n_layers + (m.encoder_layers if m.arch == "encoder_decoder" else 0)

    def step_bytes(tokens_per_seq: int, backward: bool) -> int:
        per_token_layer = 2 * (34 * m.d_model + 5 * m.n_heads * tokens_per_seq)
        acts = t.batch_size * tokens_per_seq * per_token_layer * layers
        logits = t.batch_size * tokens_per_seq * vocab * 4 * (3 if backward else 1)
        return (acts if backward else acts // layers) + logits

    train_len = _longest(cfg, 1)
    eval_len = _longest(cfg, max(t.eval_scales or [1]))
    activations = max(step_bytes(train_len, True), step_bytes(eval_len, False))
    examples = t.n_train * 2 * (TENSOR_OVERHEAD + 8 * train_len) + sum(
        t.n_val * 2 * (TENSOR_OVERHEAD + 8 * _longest(cfg, s)) for s in t.eval_scales or [1]
    )
    if t.name == "text":
        examples += t.max_bytes * 8  # the corpus, as int64 tokens
    return MemoryEstimate(n, n * BYTES_PER_PARAM, activations, examples)


def available_memory(accelerator: str) -> tuple[int | None, str]:
    """(bytes free, device name) where the run will allocate; None when unknown."""
    if accelerator == "gpu":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(free), "the GPU"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "this machine"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this machine"
    except (OSError, ValueError):
        return None, "this machine"


def cpu_slots() -> int:
    """CPU cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def check_fits(cfg: RunConfig, accelerator: str, available: int | None = None) -> MemoryEstimate:
    """Raise ConfigError (one line) when the run cannot fit; returns the estimate.

    ``available`` overrides the measured free memory (bytes).
    """
    t, m = cfg.train, cfg.model
    if accelerator == "cpu":
        slots = cpu_slots()
        if processes_here(t.devices, t.nodes) > slots:  # Slurm's ranks: one process each
            raise ConfigError(
                f"train.devices={t.devices}: more processes than the {slots} CPU slots "
                f"this process may use; allowed on CPU: 1..{slots}"
            )
        if t.threads is not None and t.threads > slots:
            raise ConfigError(
                f"train.threads={t.threads}: more than the {slots} CPU slots this process "
                f"may use; allowed: 1..{slots}"
            )
    est = estimate_memory(cfg)
    where = "this machine" if accelerator == "cpu" else "the GPU"
    if available is None:
        available, where = available_memory(accelerator)
    if available is None or est.total <= available:
        return est
    task = cfg.task
    raise ConfigError(
        f"the run needs about {_size(est.total)} but {where} has {_size(available)} free: "
        f"parameters and optimizer state {_size(est.state)} (model.d_model={m.d_model}, "
        f"model.n_layers={m.n_layers}), activations {_size(est.activations)} "
        f"(task.batch_size={task.batch_size}, task.seq_len={task.seq_len}), data "
        f"{_size(est.data)} (task.n_train={task.n_train}, task.n_val={task.n_val}); "
        "make the largest of these smaller"
    )

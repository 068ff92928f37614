"""FLOPs per token: counted from the built model's matmuls, or measured by Lightning.

The analytic count follows the 6N rule (Kaplan et al. 2020; PaLM, Chowdhery et
al. 2022, Appendix B): a training step costs ``6 N + 12 L d T`` FLOPs per token,
inference ``2 N + 4 L d T``. Each weight of a matrix multiply does one multiply
and one add per token in the forward pass (2 FLOPs), and twice that in the
backward pass (the gradient with respect to the input and to the weight): 6 in
all. The attention scores ``QK^T`` and ``AV`` add ``2 x 2 T d`` FLOPs per token
and layer forward (``12 L d T`` with the backward), over the full ``T x T``
square (no halving for the causal mask, as in PaLM and ``measure_flops``), with
``d`` = ``n_heads * head_dim``, times the attention kind's ``score_flops_factor``
(differential attention: 1.5, its values are twice as wide; gated and sigmoid
attention: 1, the gate is a listed weight and the sigmoid's matmuls are SDPA's).

``N`` is read off the built model, as torchtitan's
``get_dense_model_nparams_and_flops`` does: the weights of every matrix multiply,
which each :class:`~bench.model.attention.Attention` and
:class:`~bench.model.feedforward.FeedForward` lists in ``weight_blocks()`` (so a
SwiGLU's two input projections are counted because the module says it has two),
plus the output projection ``d_model x vocab`` (counted even when tied to the
input embedding: the unembedding matmul is real work). Embedding lookups, biases
and norm gains are not counted (no matmul). This is what
``torch.utils.flop_counter`` measures; it differs from Kaplan et al.'s
"non-embedding N" by the head.

A FIRE bias (Li et al. 2023) adds its MLP, ``1 -> m -> n_heads``, on every ``T x T``
query-key pair once a forward (not per sequence of the batch): ``2 T^2 (m + m H)``
forward, times 3 with the backward (its input depends on the learnable ``c`` and
threshold, so the input gradient is computed too). Per token that is divided by the
batch's ``B T`` tokens (``batch_size``).

For an encoder-decoder (source length S, target length T) the FLOPs are per token
of source + target: encoder blocks run on S tokens, decoder blocks and the head
on T, cross-attention K/V projections on S, cross-attention scores over ``T x S``.

Attention-sink positions (``model.sink_tokens = k``, :mod:`bench.model.sink`) are
work without tokens: a causal stack's blocks run on ``T + k`` positions, its scores
(and a FIRE bias) cover ``(T + k)^2`` (cross-attention ``(T + k) x S``), the head
runs on the ``T`` tokens only, and the FLOPs are still per token.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping

import torch
from lightning.fabric.utilities.throughput import measure_flops
from torch import Tensor, nn

from bench.config import ModelConfig
from bench.diagnostics.batches import batch_tokens, model_forward
from bench.diagnostics.grouping import stacks_of
from bench.model.attention import Attention
from bench.model.feedforward import FeedForward
from bench.model.positional import FIRE
from bench.model.sink import sink_count

_MEMORY_ROLES = ("k", "v")  # cross-attention projections applied to the encoder's memory


def _meta_model(cfg: ModelConfig) -> nn.Module:
    """The model ``cfg`` builds, on the meta device (no memory, no compute)."""
    from bench.model import build_model

    with torch.device("meta"):
        return build_model(cfg)


def _matmul_weights(module: nn.Module) -> tuple[int, int]:
    """Matmul weights under ``module``: (applied to its own tokens, to the memory)."""
    own = memory = 0
    for m in module.modules():
        if not isinstance(m, Attention | FeedForward):
            continue
        for role, linear, rows in m.weight_blocks():
            n = (rows.stop - rows.start) * linear.in_features
            if isinstance(m, Attention) and m.cross and role in _MEMORY_ROLES:
                memory += n
            else:
                own += n
    return own, memory


def _head_weights(model: nn.Module) -> int:
    """Weights of the output projection (``lm_head``), tied or not."""
    head = model.get_submodule("lm_head")
    assert isinstance(head, nn.Linear)
    return head.in_features * head.out_features


def _score_width(model: nn.Module) -> float:
    """``d`` of the attention scores: ``n_heads * head_dim`` of the model's attention,
    times its kind's ``score_flops_factor``."""
    attn = next(m for m in model.modules() if isinstance(m, Attention))
    return attn.n_heads * attn.head_dim * attn.score_flops_factor


def _bias_flops(model: nn.Module, t: int) -> int:
    """Forward FLOPs of the FIRE bias MLPs under ``model`` for one ``t x t`` forward."""
    total = 0
    for m in model.modules():
        if isinstance(m, FIRE):
            for layer in m.mlp:
                if isinstance(layer, nn.Linear):
                    total += 2 * t * t * layer.in_features * layer.out_features
    return total


def matmul_params(cfg: ModelConfig) -> int:
    """``N`` of the FLOPs convention: weights of every matmul of the built model, head included."""
    model = _meta_model(cfg)
    own, memory = _matmul_weights(model)
    return own + memory + _head_weights(model)


def model_flops_per_token(
    cfg: ModelConfig,
    seq_len: int,
    *,
    training: bool = True,
    src_len: int | None = None,
    batch_size: int = 1,
) -> float:
    """Analytic FLOPs per token: ``6N + 12 L d T`` (training) or ``2N + 4 L d T`` (forward).

    ``seq_len`` is T; for an encoder-decoder ``src_len`` is S (default T) and the
    result is per source + target token. ``batch_size`` only matters for a FIRE bias,
    computed once a batch. See the module docstring.
    """
    model = _meta_model(cfg)
    mult = 3 if training else 1  # backward = 2x forward
    d, t, head = _score_width(model), seq_len, _head_weights(model)
    p = t + sink_count(cfg, causal=True)  # the causal stack's positions: sinks, then tokens
    stacks = dict(stacks_of(model))
    if "block" in stacks:
        own, _ = _matmul_weights(model)
        fwd = 2 * (own * p + head * t) + 4 * len(stacks["block"].blocks) * d * p * p
        return float(mult * fwd) / t + mult * _bias_flops(model, p) / (batch_size * t)
    s = src_len or seq_len
    encoder, decoder = stacks["enc_block"], stacks["dec_block"]
    enc_own, _ = _matmul_weights(encoder)
    dec_own, dec_memory = _matmul_weights(decoder)
    matmul = s * enc_own + p * dec_own + t * head + s * dec_memory
    scores = len(encoder.blocks) * s * s + len(decoder.blocks) * (p * p + p * s)
    fwd = 2 * matmul + 4 * d * scores
    return float(mult * fwd) / (s + t)


def measured_flops_per_batch(
    cfg: ModelConfig, batch: Mapping[str, Tensor], *, training: bool = True
) -> int:
    """FLOPs of one forward (+ backward when ``training``) counted by ``measure_flops``.

    The model is built on the meta device and fed meta tensors of the batch's
    shapes, so this costs no memory and no compute.
    """
    model = _meta_model(cfg)
    meta = {
        k: torch.empty_like(v, device="meta") if isinstance(v, Tensor) else v
        for k, v in batch.items()
    }
    model.train(training)
    loss_fn: Callable[[Tensor], Tensor] | None = (lambda y: y.sum()) if training else None
    return int(measure_flops(model, lambda: model_forward(model, meta), loss_fn))


def flops_per_batch(cfg: ModelConfig, batch: Mapping[str, Tensor]) -> int:
    """Training FLOPs of one batch: :func:`measured_flops_per_batch`, else the analytic count.

    The one definition both throughput measurements use (the run-time callback
    and ``bench throughput``), so that their MFUs are comparable. The analytic
    count (:func:`model_flops_per_token` times the batch's tokens) is the
    fallback when the FLOP counter cannot trace the model.
    """
    try:
        return measured_flops_per_batch(cfg, batch, training=True)
    except Exception as e:  # never fail a measurement over a FLOP count
        warnings.warn(f"measure_flops failed ({e}); using the analytic FLOPs", stacklevel=2)
        first = next(iter(batch.values()))
        seq, b = int(first.shape[1]), int(first.shape[0])
        return int(model_flops_per_token(cfg, seq, batch_size=b) * batch_tokens(batch))

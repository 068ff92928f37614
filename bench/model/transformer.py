"""Decoder-only LM and encoder-decoder, built from the same blocks.

A :class:`Stack` is positional encoding + blocks + (if the placement wants one)
a final norm. It builds the attention mask, bias and rotation once per forward
and hands them to every block, and puts a causal stack's attention-sink inputs
(``model.sink_tokens``, :mod:`bench.model.sink`) before every sequence.
:class:`DecoderLM` is a causal stack with token embeddings and an LM head;
:class:`EncoderDecoder` has an encoder stack, a decoder stack with
cross-attention, one shared token embedding and a head.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import torch
from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.attention import Attention, attention_inputs
from bench.model.block import PLACEMENTS, Block
from bench.model.deepnorm import StackName, stack_constants
from bench.model.embedding import EMBED_SCALES
from bench.model.feedforward import FeedForward
from bench.model.init import INITS
from bench.model.norms import norm_for
from bench.model.parameterization import PARAMETERIZATIONS, Parameterization
from bench.model.positional import POSITIONAL
from bench.model.sink import SinkTokens, drop, prepend, sink_count


class Stack(nn.Module):
    """``n_layers`` blocks with their positional encoding ``pos`` and ``final_norm``.

    ``deepnorm`` holds the stack's DeepNorm constants: ``alpha`` scales the deepnorm
    placement's residual, ``beta`` is the deepnorm init's gain (either may be used
    without the other). ``attn_scale`` multiplies every attention's scores (None:
    ``1/sqrt(d_head)``; the parameterization's).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        n_layers: int,
        *,
        causal: bool,
        cross: bool = False,
        stack: StackName = "decoder",
        attn_scale: float | None = None,
    ) -> None:
        super().__init__()
        self.causal, self.n_layers = causal, n_layers
        self.deepnorm = stack_constants(cfg, stack)
        self.pos = POSITIONAL[cfg.pos_encoding](cfg, causal)
        self.drop = nn.Dropout(cfg.dropout)
        alpha = self.deepnorm.alpha  # only the deepnorm placement reads it
        self.blocks = nn.ModuleList(
            Block(cfg, cross, alpha, attn_scale, layer=i, n_layers=n_layers)
            for i in range(n_layers)
        )
        self.window = cfg.attn_window
        needs_final = PLACEMENTS[cfg.norm_placement].final_norm
        self.final_norm = norm_for(cfg) if needs_final else None

    def stacks(self) -> list[Stack]:
        """The stacks of this model (for a decoder-only model: itself)."""
        return [self]

    def sublayers(self) -> Iterator[Attention | FeedForward]:
        """Every attention and FFN of every block, block by block."""
        for block in self.blocks:
            yield from cast(Block, block).sublayers()

    def run(
        self,
        x: Tensor,
        pad: Tensor | None = None,
        memory: Tensor | None = None,
        memory_pad: Tensor | None = None,
        sinks: Tensor | None = None,
    ) -> Tensor:
        """Embedded tokens ``x [B, T, D]`` (``pad`` True at padding) -> hidden states ``[B, T, D]``.

        ``sinks [k, D]``: the stack's attention-sink inputs, put before every sequence
        (positions ``0..k-1``); their hidden states are not returned.
        """
        k = 0 if sinks is None else sinks.shape[0]
        if sinks is not None:
            x, pad = prepend(x, sinks, pad)
        t, dev = x.shape[1], x.device
        x = self.drop(self.pos.embed(x))
        inputs = attention_inputs(
            t,
            t,
            causal=self.causal,
            device=dev,
            key_pad=pad,
            bias=self.pos.bias(t, t, dev),
            rotary=self.pos.rotary(t, dev),
            window=self.window,
            sink_queries=k,
            sink_keys=k,
        )
        memory_inputs = None
        if memory is not None:
            memory_inputs = attention_inputs(
                t, memory.shape[1], causal=False, device=dev, key_pad=memory_pad, sink_queries=k
            )
        for block in self.blocks:
            x = block(x, inputs, memory, memory_inputs)
        return drop(self.final_norm(x) if self.final_norm is not None else x, k)

    def forward(self, x: Tensor, pad: Tensor | None = None) -> Tensor:
        return self.run(x, pad)


def _head(cfg: ModelConfig, embed: nn.Embedding) -> nn.Linear:
    head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
    if cfg.tie_embeddings:
        head.weight = embed.weight
    return head


def _readout(head: nn.Linear, multiplier: float, h: Tensor) -> Tensor:
    """Logits ``head(h)``, times the parameterization's readout multiplier (µP's
    ``base_width / d_model``, mup's ``MuReadout``); standard multiplies by nothing."""
    logits = head(h)
    return logits if multiplier == 1.0 else logits * multiplier


@contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """No gradients and eval mode (no dropout), restoring the caller's mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _greedy(step: Callable[[Tensor], Tensor], seq: Tensor, n: int, eos: int | None) -> Tensor:
    """Append up to ``n`` argmax tokens to ``seq``; ``step(seq)`` gives next-token logits ``[B, V]``.

    Rows that emitted ``eos`` keep emitting it; stops early once every row has.
    """
    done = torch.zeros(seq.shape[0], dtype=torch.bool, device=seq.device)
    for _ in range(n):
        nxt = step(seq).argmax(-1)
        if eos is not None:
            nxt = nxt.masked_fill(done, eos)
            done = done | (nxt == eos)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if eos is not None and bool(done.all()):
            break
    return seq


def _sink_tokens(cfg: ModelConfig) -> SinkTokens | None:
    """The causal stack's sink vectors (``model.sink_tokens``), or None."""
    return SinkTokens(cfg) if sink_count(cfg, causal=True) else None


class DecoderLM(Stack):
    """Causal language model: ``tok_embed`` -> ``embed_scale`` -> causal stack -> ``lm_head``.

    ``parameterization`` (default: standard) says how init, attention scale and readout
    depend on width (:mod:`bench.model.parameterization`). ``sinks`` (``model.sink_tokens``
    > 0): the attention-sink vectors the stack puts before every sequence.
    """

    def __init__(self, cfg: ModelConfig, parameterization: Parameterization | None = None) -> None:
        p = parameterization or Parameterization(cfg)
        super().__init__(cfg, cfg.n_layers, causal=True, attn_scale=p.attention_scale)
        self.cfg, self.parameterization = cfg, p
        resolved = cfg.resolved()
        self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.embed_scale = EMBED_SCALES[resolved["embed_scale"]](cfg, p.embedding_width)
        self.sinks = _sink_tokens(cfg)
        self.lm_head = _head(cfg, self.tok_embed)
        self.readout_multiplier = p.readout_multiplier
        INITS[resolved["init"]](self)
        p.init(self)

    def embed(self, input_ids: Tensor) -> Tensor:
        """Token ids ``[B, T]`` -> scaled token embeddings ``[B, T, D]`` (no positions yet)."""
        return self.embed_scale(self.tok_embed(input_ids))

    def sink_inputs(self) -> Tensor | None:
        """The scaled sink vectors ``[k, D]`` the stack puts first (None without sinks)."""
        return self.sinks(self.embed_scale) if self.sinks is not None else None

    def hidden(self, input_ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """Final hidden states ``[B, T, D]`` (of the tokens; sink positions dropped)."""
        return self.run(self.embed(input_ids), pad_mask, sinks=self.sink_inputs())

    def forward(self, input_ids: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        """``input_ids [B, T]`` (``pad_mask`` True at padding) -> logits ``[B, T, V]``."""
        return self.readout(self.hidden(input_ids, pad_mask))

    def readout(self, h: Tensor) -> Tensor:
        """Hidden states ``[..., D]`` -> logits ``[..., V]``."""
        return _readout(self.lm_head, self.readout_multiplier, h)

    def generate(self, prompt: Tensor, max_new_tokens: int, eos_id: int | None = None) -> Tensor:
        """Greedy continuation: ``[B, P]`` -> ``[B, P + new]``, ``new <= max_new_tokens``
        (fewer only when every row has emitted ``eos_id``; finished rows are filled with it)."""
        with _inference(self):
            return _greedy(
                lambda s: self.readout(self.hidden(s)[:, -1]), prompt, max_new_tokens, eos_id
            )


class EncoderDecoder(nn.Module):
    """Vaswani et al. 2017 layout: bidirectional ``encoder``, causal ``decoder`` with
    cross-attention to the encoder memory; one ``tok_embed`` (and ``embed_scale``) for
    source and target; ``parameterization`` as in :class:`DecoderLM`; ``sinks``
    (``model.sink_tokens`` > 0): the decoder's attention-sink vectors (the encoder has none)."""

    def __init__(self, cfg: ModelConfig, parameterization: Parameterization | None = None) -> None:
        super().__init__()
        p = parameterization or Parameterization(cfg)
        self.cfg, self.parameterization = cfg, p
        resolved = cfg.resolved()
        self.tok_embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.embed_scale = EMBED_SCALES[resolved["embed_scale"]](cfg, p.embedding_width)
        scale = p.attention_scale
        self.encoder = Stack(
            cfg, cfg.encoder_layers, causal=False, stack="encoder", attn_scale=scale
        )
        self.decoder = Stack(
            cfg, cfg.n_layers, causal=True, cross=True, stack="decoder", attn_scale=scale
        )
        self.sinks = _sink_tokens(cfg)
        self.lm_head = _head(cfg, self.tok_embed)
        self.readout_multiplier = p.readout_multiplier
        INITS[resolved["init"]](self)
        p.init(self)

    def stacks(self) -> list[Stack]:
        """The encoder, then the decoder."""
        return [self.encoder, self.decoder]

    def embed(self, ids: Tensor) -> Tensor:
        """Token ids ``[B, T]`` -> scaled token embeddings ``[B, T, D]`` (no positions yet)."""
        return self.embed_scale(self.tok_embed(ids))

    def sink_inputs(self) -> Tensor | None:
        """The decoder's scaled sink vectors ``[k, D]`` (None without sinks)."""
        return self.sinks(self.embed_scale) if self.sinks is not None else None

    def encode(self, src: Tensor, src_pad: Tensor | None = None) -> Tensor:
        """``src [B, S]`` -> memory ``[B, S, D]``."""
        return self.encoder.run(self.embed(src), src_pad)

    def decode(self, tgt_in: Tensor, memory: Tensor, src_pad: Tensor | None = None) -> Tensor:
        """``tgt_in [B, T]`` attending to ``memory`` -> logits ``[B, T, V]``."""
        h = self.decoder.run(
            self.embed(tgt_in), memory=memory, memory_pad=src_pad, sinks=self.sink_inputs()
        )
        return _readout(self.lm_head, self.readout_multiplier, h)

    def forward(self, src: Tensor, tgt_in: Tensor, src_pad: Tensor | None = None) -> Tensor:
        """Teacher-forced logits ``[B, T, V]``."""
        return self.decode(tgt_in, self.encode(src, src_pad), src_pad)

    def generate(
        self,
        src: Tensor,
        max_new_tokens: int,
        bos_id: int,
        eos_id: int | None = None,
        src_pad: Tensor | None = None,
    ) -> Tensor:
        """Greedy translation: ``[B, S]`` -> ``[B, new]`` (without the leading ``bos_id``)."""
        start = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        with _inference(self):
            memory = self.encode(src, src_pad)

            def step(seq: Tensor) -> Tensor:
                h = self.decoder.run(
                    self.embed(seq), memory=memory, memory_pad=src_pad, sinks=self.sink_inputs()
                )
                return _readout(self.lm_head, self.readout_multiplier, h[:, -1])

            return _greedy(step, start, max_new_tokens, eos_id)[:, 1:]


ARCHS: dict[str, type[DecoderLM | EncoderDecoder]] = {
    "decoder": DecoderLM,
    "encoder_decoder": EncoderDecoder,
}


def build_model(
    cfg: ModelConfig, parameterization: str = "standard", base_width: int | None = None
) -> nn.Module:
    """The model ``cfg.arch`` names, with the init and embedding scale of ``cfg.resolved()``,
    in the ``parameterization`` of ``PARAMETERIZATIONS`` (``train.parameterization``;
    ``base_width``: ``train.mup_base_width``)."""
    return ARCHS[cfg.arch](cfg, PARAMETERIZATIONS[parameterization](cfg, base_width))

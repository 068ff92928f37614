"""Which part of the model each parameter and attention layer belongs to, by module type.

Groups (the names in every ``cond/...`` metric key; W&B, the report and the
diagnoses read them):

- a block: ``block_{i}`` (decoder-only), ``enc_block_{i}`` / ``dec_block_{i}``
  (encoder-decoder), ``i`` its position in its stack's ``blocks``;
  inside a block the sublayer is ``norm`` when a :class:`~bench.model.norms.Norm`
  is on the parameter's path (a placement's norm, ``q_norm``), else ``attn`` /
  ``cross_attn`` (an :class:`~bench.model.attention.Attention`, by its ``cross``
  flag) or ``ffn`` (a :class:`~bench.model.feedforward.FeedForward`), else ``other``;
- outside blocks: ``embed`` (token embeddings, attention-sink vectors, positional
  encodings, the embedding scale), ``final_norm``, ``lm_head`` (the output projection),
  ``other``.

Attention layers are named like their blocks: ``layer_{i}``, ``enc_layer_{i}``,
``dec_layer_{i}`` and ``dec_layer_{i}/cross``. The grouping asks the modules what
they are (``isinstance``), not what they are called, so renaming an attribute in
``bench.model`` cannot silently move a parameter to ``other``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor, nn

from bench.model.attention import Attention
from bench.model.block import Block
from bench.model.embedding import EmbedScale
from bench.model.feedforward import FeedForward
from bench.model.norms import Norm
from bench.model.positional import Positional
from bench.model.transformer import EncoderDecoder, Stack

# block-group prefix -> attention-layer prefix; the order is depth order (input first)
_PREFIXES = {"enc_block": "enc_layer", "block": "layer", "dec_block": "dec_layer"}
_STACK_ORDER = {prefix: i for i, prefix in enumerate(_PREFIXES)}
SUBLAYERS = ("attn", "cross_attn", "ffn")


def stacks_of(model: nn.Module) -> list[tuple[str, Stack]]:
    """``(block-group prefix, stack)`` of a bench model, encoder first."""
    if isinstance(model, EncoderDecoder):
        return [("enc_block", model.encoder), ("dec_block", model.decoder)]
    if isinstance(model, Stack):
        return [("block", model)]
    return []


def blocks_of(model: nn.Module) -> Iterator[tuple[str, Block]]:
    """``("block_0", block), ...`` in depth order (the encoder's first)."""
    for prefix, stack in stacks_of(model):
        for i, block in enumerate(stack.blocks):
            assert isinstance(block, Block)
            yield f"{prefix}_{i}", block


def _sublayer(module: nn.Module) -> str | None:
    if isinstance(module, Norm):
        return "norm"
    if isinstance(module, Attention):
        return "cross_attn" if module.cross else "attn"
    if isinstance(module, FeedForward):
        return "ffn"
    return None


def _outside(module: nn.Module) -> str | None:
    if isinstance(module, nn.Embedding | Positional | EmbedScale):
        return "embed"
    if isinstance(module, Norm):
        return "final_norm"
    if isinstance(module, nn.Linear):
        return "lm_head"
    return None


def _walk(
    module: nn.Module, prefix: str, kinds: tuple[str, ...], blocks: dict[int, str]
) -> Iterator[tuple[str, str, str | None]]:
    """``(parameter name, group, sublayer)`` of every parameter under ``module``.

    ``kinds`` are the kinds of the modules on the path (a block's name first when
    inside one).
    """
    if id(module) in blocks:
        kinds = (blocks[id(module)],)
    else:
        inside = bool(kinds) and kinds[0] in blocks.values()
        kind = _sublayer(module) if inside else _outside(module)
        kinds = (*kinds, kind) if kind else kinds
    for name, _ in module.named_parameters(recurse=False, remove_duplicate=False):
        yield prefix + name, *_classify(kinds, set(blocks.values()))
    for name, child in module.named_children():
        yield from _walk(child, f"{prefix}{name}.", kinds, blocks)


def _classify(kinds: tuple[str, ...], block_names: set[str]) -> tuple[str, str | None]:
    if kinds and kinds[0] in block_names:
        subs = kinds[1:]
        if "norm" in subs:
            return kinds[0], "norm"
        return kinds[0], next((s for s in subs if s in SUBLAYERS), "other")
    for group in ("embed", "final_norm", "lm_head"):  # the first that applies
        if group in kinds:
            return group, None
    return "other", None


def classify_parameters(model: nn.Module) -> dict[str, tuple[str, str | None]]:
    """``{parameter name: (group, sublayer)}``; sublayer is None outside blocks.

    Names are those of ``model.named_parameters()``; a tied weight has the
    group of the name listed first (the token embedding, not the head).
    """
    blocks = {id(block): name for name, block in blocks_of(model)}
    return {name: (group, sub) for name, group, sub in _walk(model, "", (), blocks)}


def attention_layers(model: nn.Module) -> dict[int, str]:
    """``{id(attention module): layer name}`` for the attention layers of every block."""
    out: dict[int, str] = {}
    for name, block in blocks_of(model):
        prefix, _, i = name.rpartition("_")
        layer = f"{_PREFIXES[prefix]}_{i}"
        out[id(block.attn)] = layer
        if block.cross_attn is not None:
            out[id(block.cross_attn)] = f"{layer}/cross"
    return out


def ffn_output_weights(model: nn.Module) -> dict[str, Tensor]:
    """``{block group: weight}`` of each block's feed-forward output matrix ``W2``
    (``d_ff -> d_model``; the "out" role of :meth:`FeedForward.weight_blocks`), in
    depth order: the matrix whose gradient at init Xiong et al. 2020 (Theorem 1,
    Fig. 3) bound by depth."""
    out: dict[str, Tensor] = {}
    for name, block in blocks_of(model):
        for module in block.modules():
            if isinstance(module, FeedForward):
                linear = next(lin for role, lin, _ in module.weight_blocks() if role == "out")
                out[name] = linear.weight
    return out


def stack_of_layer(layer: str) -> str:
    """``enc_layer_0`` -> encoder; decoder self- and cross-attention -> decoder (the queries')."""
    return "encoder" if layer.startswith("enc_layer") else "decoder"


def _block_order(block: str) -> tuple[int, int]:
    prefix, _, index = block.rpartition("_")
    return _STACK_ORDER[prefix], int(index)


@dataclass(frozen=True)
class Layout:
    """Which group every (unique, trainable) parameter of a model belongs to."""

    names: tuple[str, ...]
    params: tuple[nn.Parameter, ...]
    groups: tuple[str, ...]  # per parameter: "block_0" or "embed"
    sublayers: tuple[str | None, ...]  # per parameter: "attn", "norm", ... or None
    blocks: tuple[str, ...]  # block groups in depth order (encoder first)

    @classmethod
    def of(cls, model: nn.Module) -> Layout:
        """Group ``model.named_parameters()`` (tied weights appear once)."""
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        classes = classify_parameters(model)
        kinds = [classes.get(n, ("other", None)) for n, _ in named]
        blocks = sorted({g for g, s in kinds if s is not None}, key=_block_order)
        return cls(
            names=tuple(n for n, _ in named),
            params=tuple(p for _, p in named),
            groups=tuple(g for g, _ in kinds),
            sublayers=tuple(s for _, s in kinds),
            blocks=tuple(blocks),
        )

    def stacks(self) -> dict[str, list[str]]:
        """Blocks per stack prefix, in depth order: ``{"block": [...]}`` or enc/dec."""
        out: dict[str, list[str]] = {}
        for b in self.blocks:
            out.setdefault(b.rpartition("_")[0], []).append(b)
        return out

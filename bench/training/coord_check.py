"""The coordinate check of Tensor Programs V (Yang et al. 2022, arXiv 2203.03466; mup's
``get_coord_data``): train a few steps at a large learning rate at several widths and
record the size ``mean |x|`` of every activation at each step.

Under a correct µP every curve is flat in width after the first steps (the readout and
the attention logits may start smaller at wider widths, and are zero here at init: zero
readout or query); under the standard parameterization with Adam the readout logits and
the blocks' outputs grow with width. The activations recorded (forward hooks: the model
keeps no state) are the embedding output (the first block's input), each block's output,
each layer's attention logits (``q.k`` times the layer's scale, over the pairs the causal
mask lets through) and the readout logits. Plain torch and the run's own optimizer
(:func:`bench.training.optimizer.build_optimizer`); decoder models only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bench.config import RunConfig
from bench.model import build_model
from bench.model.attention import Attention
from bench.model.block import Block
from bench.tasks.base import BenchDataModule
from bench.tasks.registry import build_datamodule
from bench.tasks.vocab import IGNORE
from bench.training.optimizer import build_optimizer


@dataclass(frozen=True)
class CoordData:
    """``sizes[name][width]``: mean |x| of activation ``name`` at each recorded step
    (step 0 at init, step s after s updates)."""

    widths: tuple[int, ...]
    parameterization: str
    sizes: dict[str, dict[int, list[float]]]

    def ratio(self, name: str, step: int = -1) -> float:
        """Size at the widest width over size at the narrowest, at ``step``."""
        first, last = (
            self.sizes[name][self.widths[0]][step],
            self.sizes[name][self.widths[-1]][step],
        )
        return last / first if first > 0 else math.inf

    def ratios(self, step: int = -1) -> dict[str, float]:
        return {name: self.ratio(name, step) for name in self.sizes}


def _mean_abs(x: Tensor) -> float:
    return x.detach().float().abs().mean().item()


def _attention_logit_size(layer: Attention, args: tuple[Any, ...]) -> float:
    """mean |q.k * scale| over the query-key pairs the causal mask lets through."""
    x, inputs = args[0], args[1]
    with torch.no_grad():
        q, k, _, _ = layer.project(x, inputs)
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
        logits = q.float() @ k.float().transpose(-2, -1)
        scale = layer.scale if layer.scale is not None else q.shape[-1] ** -0.5
        t = logits.shape[-1]
        seen = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
        return (logits * scale).abs()[..., seen].mean().item()


class ActivationRecorder:
    """Forward hooks on a decoder's embedding dropout (its output: the first block's input),
    blocks, attention layers and the whole model (logits); ``sizes`` after a forward."""

    def __init__(self, model: nn.Module) -> None:
        self.sizes: dict[str, float] = {}
        self._handles = [model.get_submodule("drop").register_forward_hook(self._size("embed"))]
        blocks = [m for m in model.modules() if isinstance(m, Block)]
        for i, block in enumerate(blocks):
            self._handles.append(block.register_forward_hook(self._size(f"block{i}")))
            self._handles.append(block.attn.register_forward_hook(self._logits(f"attn_logits{i}")))
        self._handles.append(model.register_forward_hook(self._size("logits")))

    def _size(self, name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Tensor) -> None:
            self.sizes[name] = _mean_abs(output)

        return hook

    def _logits(self, name: str) -> Any:
        def hook(layer: Attention, args: tuple[Any, ...], output: Tensor) -> None:
            self.sizes[name] = _attention_logit_size(layer, args)

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def _batches(dm: BenchDataModule) -> Iterator[dict[str, Tensor]]:
    while True:
        yield from dm.train_dataloader()


def coord_check(
    cfg: RunConfig,
    widths: Sequence[int],
    steps: int,
    seeds: Sequence[int] = (0,),
    model_factory: Any = None,
) -> CoordData:
    """Train ``cfg`` (its parameterization, LR and optimizer) for ``steps`` updates at each
    width (``model.d_model``; heads fixed) and record every activation's size at init and
    after each update, averaged over ``seeds``. The batches are the same at every width.

    ``model_factory(cfg) -> nn.Module`` replaces ``build_model`` (a test builds a deliberately
    wrong µP with it, to show the check catches it)."""
    assert cfg.model.arch == "decoder", "the coordinate check records a decoder"
    dm = build_datamodule(cfg.task, cfg.model.arch)
    vocab = dm.vocab_size
    batches = _batches(dm)
    fixed = [next(batches) for _ in range(steps + 1)]
    sizes: dict[str, dict[int, list[float]]] = {}
    for width in widths:
        run = cfg.model_copy(deep=True)
        run.model.d_model, run.model.vocab_size = width, vocab
        per_seed = []
        for seed in seeds:
            torch.manual_seed(seed)
            if model_factory is not None:
                model = model_factory(run)
            else:
                t = run.train
                model = build_model(run.model, t.parameterization, t.mup_base_width)
            per_seed.append(_train_and_record(model, run, fixed))
        for name in per_seed[0][0]:
            sizes.setdefault(name, {})[width] = [
                sum(s[step][name] for s in per_seed) / len(per_seed) for step in range(steps + 1)
            ]
    return CoordData(tuple(widths), cfg.train.parameterization, sizes)


def _train_and_record(
    model: nn.Module, cfg: RunConfig, batches: list[dict[str, Tensor]]
) -> list[dict[str, float]]:
    opt, sched = build_optimizer(model, cfg.train)
    recorder = ActivationRecorder(model)
    out = []
    try:
        for i, batch in enumerate(batches):
            logits = model(batch["input_ids"], batch.get("pad_mask"))
            out.append(dict(recorder.sizes))
            if i == len(batches) - 1:
                break
            loss = F.cross_entropy(
                logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=IGNORE
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            sched.step()
    finally:
        recorder.remove()
    return out

"""Special tokens, example encoding and batch collation shared by every task.

Token ids 0..3 are the specials below; task symbols start at :data:`N_SPECIAL`.

A prompt/answer problem becomes, for each architecture:

* ``decoder``: the sequence ``prompt SEP answer EOS``. ``input_ids`` is that
  sequence without its last token and ``labels[t]`` is the token after position
  ``t`` (already shifted), :data:`IGNORE` over the prompt, so the loss and the
  exact match cover exactly the answer and its EOS.
* ``encoder_decoder``: ``src = prompt``, ``tgt_in = BOS answer``,
  ``labels = answer EOS``.

:func:`collate` right-pads with PAD (labels with IGNORE), adds ``src_pad``
(True at padding) for encoder-decoder batches (:func:`real_positions` reads a
batch's padding back, per stack), and ``trivial`` (True at scored
positions whose label is one of the task's trivially predictable tokens, e.g.
the end token of a fixed-length answer; see :mod:`bench.tasks.baseline`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

PAD = 0
BOS = 1
EOS = 2
SEP = 3
N_SPECIAL = 4  # first symbol id
IGNORE = -100  # labels with no loss (torch's cross_entropy ignore_index default)

Example = dict[str, Tensor]


def encode_decoder(prompt: Sequence[int], answer: Sequence[int]) -> Example:
    """``prompt SEP answer EOS`` as shifted ``input_ids``/``labels``, loss on the answer only."""
    seq = torch.tensor([*prompt, SEP, *answer, EOS], dtype=torch.long)
    labels = seq[1:].clone()
    labels[: len(prompt)] = IGNORE  # targets up to and including SEP belong to the prompt
    return {"input_ids": seq[:-1], "labels": labels}


def encode_encoder_decoder(prompt: Sequence[int], answer: Sequence[int]) -> Example:
    """``src = prompt``, ``tgt_in = BOS answer``, ``labels = answer EOS``."""
    answer = list(answer)
    return {
        "src": torch.tensor(list(prompt), dtype=torch.long),
        "tgt_in": torch.tensor([BOS, *answer], dtype=torch.long),
        "labels": torch.tensor([*answer, EOS], dtype=torch.long),
    }


ENCODERS: dict[str, Callable[[Sequence[int], Sequence[int]], Example]] = {
    "decoder": encode_decoder,
    "encoder_decoder": encode_encoder_decoder,
}

_PAD_VALUES = {"labels": IGNORE}  # every other key pads with PAD


def collate(items: Sequence[Example], trivial_labels: Sequence[int] = ()) -> dict[str, Tensor]:
    """Stack examples into a batch, right-padding keys whose lengths vary.

    ``batch["trivial"]`` marks the labels in ``trivial_labels`` (padding, labelled
    IGNORE, is never trivial: it is not scored at all).
    """
    batch = {
        key: pad_sequence(
            [it[key] for it in items], batch_first=True, padding_value=_PAD_VALUES.get(key, PAD)
        )
        for key in items[0]
    }
    if "src" in batch:
        lengths = torch.tensor([len(it["src"]) for it in items])
        batch["src_pad"] = torch.arange(batch["src"].shape[1]) >= lengths[:, None]
    labels = batch["labels"]
    batch["trivial"] = torch.isin(labels, torch.tensor(list(trivial_labels), dtype=labels.dtype))
    return batch


def real_positions(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """Which positions of a batch hold tokens rather than padding (True = real), per stack.

    ``encoder``: the source (``~src_pad``); ``decoder``: the decoder's queries
    (``tgt_in`` of an encoder-decoder batch, else ``input_ids``; ``pad_mask``
    when given). Right-padding puts PAD only after a sequence's real tokens.
    """
    if "src" in batch:
        src_pad = batch.get("src_pad")
        enc = (
            ~src_pad.bool()
            if src_pad is not None
            else torch.ones_like(batch["src"], dtype=torch.bool)
        )
        return {"encoder": enc, "decoder": batch["tgt_in"] != PAD}
    ids = batch["input_ids"]
    pad = batch.get("pad_mask")
    return {"decoder": ~pad.bool() if pad is not None else ids != PAD}

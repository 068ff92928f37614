"""What happens to token embeddings before positions are added: none, sqrt_d, norm.

The scale decides the RMS of the first block's input and how token embeddings
compare with a fixed sinusoidal table (RMS 0.71). Post-LN and deepnorm attend
to that input directly, so an input of RMS 0.03 leaves their first attention
uniform (its logits scale with the RMS squared); ``ModelConfig.resolved()``
pairs each init scheme with the scale that gives unit RMS.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from bench.config import ModelConfig
from bench.model.norms import norm_for


class EmbedScale(nn.Module):
    """Base class: maps token embeddings ``[B, T, D]`` to what the stack receives.

    ``width`` is the ``d_model`` a width-dependent scale refers to: ``cfg.d_model``, or
    µP's base width (:mod:`bench.model.parameterization`), where it stays constant.
    """

    def __init__(self, cfg: ModelConfig, width: int | None = None) -> None:
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class NoScale(EmbedScale):
    """Radford et al. 2019 (GPT-2), Touvron et al. 2023 (LLaMA): embeddings used as they are."""


class SqrtD(EmbedScale):
    """Vaswani et al. 2017, section 3.4: "we multiply those weights by sqrt(d_model)".

    With tensor2tensor's and fairseq's N(0, d_model^-1/2) embeddings this gives
    unit RMS, comparable to the sinusoidal table. Under µP ``sqrt(base width)``, with
    embeddings of the base width's std: unit RMS still, and Adam's updates of the table
    are not multiplied by a growing factor.
    """

    def __init__(self, cfg: ModelConfig, width: int | None = None) -> None:
        super().__init__(cfg, width)
        self.scale = math.sqrt(width or cfg.d_model)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale:.4g}"


class EmbedNorm(EmbedScale):
    """A norm (``model.norm_type``) right after the token embedding: Dettmers et al. 2022
    (bitsandbytes' StableEmbedding), BLOOM (Le Scao et al. 2022, "embedding LayerNorm").

    Unit RMS at the first block whatever the embeddings' init.
    """

    def __init__(self, cfg: ModelConfig, width: int | None = None) -> None:
        super().__init__(cfg, width)
        self.norm = norm_for(cfg)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x)


EMBED_SCALES: dict[str, type[EmbedScale]] = {
    "none": NoScale,
    "sqrt_d": SqrtD,
    "norm": EmbedNorm,
}

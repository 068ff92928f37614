"""The transformer: plain PyTorch, built from registries of small parts.

``build_model(ModelConfig)`` returns a :class:`DecoderLM` or an
:class:`EncoderDecoder`. Nothing here imports Lightning, W&B or Optuna.
"""

from bench.model.deepnorm import deepnorm_constants
from bench.model.positional import max_positions
from bench.model.transformer import ARCHS, DecoderLM, EncoderDecoder, Stack, build_model

__all__ = [
    "ARCHS",
    "DecoderLM",
    "EncoderDecoder",
    "Stack",
    "build_model",
    "deepnorm_constants",
    "max_positions",
]

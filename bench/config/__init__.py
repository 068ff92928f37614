"""Typed configuration shared by every command.

One flat pydantic model per concern, one module each: ``model`` (the transformer;
every architecture axis a ``Literal``, so validation, ``bench variants``, sweep
search spaces and the W&B config all read their allowed values from there, see
:func:`axes`), ``task``, ``train``, ``tracking``, ``diagnostics``, and ``run``
(``RunConfig``, the whole run, and :func:`build_run_config`). Beside them:
``errors`` (:class:`ConfigError`), ``files`` (YAML reading and writing),
``overrides`` (dotted keys) and ``base`` (the strict base model).

Loading order for ``bench COMMAND [CONFIG.yaml] [key=value ...]``:
defaults -> CONFIG.yaml -> ``variant=NAME`` preset (applied to ``model``) ->
dotted overrides. Errors become :class:`ConfigError` with one readable line.

Every public name is importable from ``bench.config``; nothing here imports torch.
"""

from __future__ import annotations

from bench.config.base import Strict
from bench.config.diagnostics import (
    DiagnosticsConfig,
    HessianConfig,
    LandscapeConfig,
    canonical_key,
)
from bench.config.errors import ConfigError, DuplicateKeyError
from bench.config.files import MAX_YAML_BYTES, dump_yaml, load_yaml, read_text_file, safe_load
from bench.config.model import (
    GPT2_STD,
    MAX_FIRST_BLOCK_RMS,
    MAX_SINUSOID_RATIO,
    MIN_FIRST_BLOCK_RMS,
    SINUSOID_RMS,
    Arch,
    AttentionKind,
    EmbedScale,
    FeedForward,
    Init,
    ModelConfig,
    NormPlacement,
    NormType,
    PosEncoding,
    embedding_std,
)
from bench.config.overrides import flatten, parse_overrides, parse_value, set_dotted
from bench.config.run import RunConfig, axes, build_run_config, validate
from bench.config.task import TaskConfig, TaskName
from bench.config.tracking import TrackingConfig, TrackingMode
from bench.config.train import Parameterization, Precision, Schedule, TrainConfig

__all__ = [
    "GPT2_STD",
    "MAX_FIRST_BLOCK_RMS",
    "MAX_SINUSOID_RATIO",
    "MAX_YAML_BYTES",
    "MIN_FIRST_BLOCK_RMS",
    "SINUSOID_RMS",
    "Arch",
    "AttentionKind",
    "ConfigError",
    "DiagnosticsConfig",
    "DuplicateKeyError",
    "EmbedScale",
    "FeedForward",
    "HessianConfig",
    "Init",
    "LandscapeConfig",
    "ModelConfig",
    "NormPlacement",
    "NormType",
    "Parameterization",
    "PosEncoding",
    "Precision",
    "RunConfig",
    "Schedule",
    "Strict",
    "TaskConfig",
    "TaskName",
    "TrackingConfig",
    "TrackingMode",
    "TrainConfig",
    "axes",
    "build_run_config",
    "canonical_key",
    "dump_yaml",
    "embedding_std",
    "flatten",
    "load_yaml",
    "parse_overrides",
    "parse_value",
    "read_text_file",
    "safe_load",
    "set_dotted",
    "validate",
]

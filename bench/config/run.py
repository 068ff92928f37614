"""The whole run's config, the axes it offers, and its resolution:
defaults -> base -> YAML file -> variant preset -> dotted overrides."""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from bench.config import presets
from bench.config.base import Strict
from bench.config.diagnostics import DiagnosticsConfig, canonical_key
from bench.config.errors import ConfigError
from bench.config.files import load_yaml
from bench.config.model import ModelConfig
from bench.config.overrides import flatten, parse_overrides
from bench.config.overrides import set_dotted as _set_dotted
from bench.config.task import TaskConfig
from bench.config.tracking import TrackingConfig
from bench.config.train import TrainConfig
from bench.validation import describe


class RunConfig(Strict):
    """Everything one training run needs; plain data, safe to ship to a worker."""

    variant: str | None = Field(
        default=None, description="a preset (variants/NAME.yaml, or a path) applied to model"
    )
    model: ModelConfig = Field(default_factory=ModelConfig, description="the transformer")
    task: TaskConfig = Field(default_factory=TaskConfig, description="what to learn")
    train: TrainConfig = Field(default_factory=TrainConfig, description="optimisation")
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="the run directory and W&B"
    )
    diagnostics: DiagnosticsConfig = Field(
        default_factory=DiagnosticsConfig, description="measurements during the run"
    )

    @model_validator(mode="after")
    def _mup_base(self) -> RunConfig:
        """Under µP the base model (``d_model = train.mup_base_width``) must be a valid model."""
        if self.train.parameterization != "mup":
            return self
        base = self.train.mup_base_width
        try:
            ModelConfig.model_validate(self.model.model_dump() | {"d_model": base})
        except ValidationError as e:
            raise ValueError(
                f"train.mup_base_width={base}: the base model (model.d_model={base}) is not "
                f"valid: {e.errors()[0]['msg']}"
            ) from None
        return self

    def flat(self) -> dict[str, Any]:
        """Flat ``section.key`` dict, the form W&B and reports use."""
        return flatten(self.model_dump(mode="json"))


def axes() -> dict[str, tuple[Any, ...]]:
    """Every ``Literal`` (and bool) field of ModelConfig with its allowed values."""
    out: dict[str, tuple[Any, ...]] = {}
    for name, field in ModelConfig.model_fields.items():
        ann = field.annotation
        if typing.get_origin(ann) is Literal:
            out[name] = typing.get_args(ann)
        elif ann is bool:
            out[name] = (False, True)
    return out


def validate(cls: type[BaseModel], data: Mapping[str, Any], source: str = "") -> Any:
    """``cls.model_validate`` with the error turned into a ConfigError line."""
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(describe(e, cls, source)) from None


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set one dotted key of a run config, under its current name (:func:`canonical_key`)."""
    _set_dotted(data, canonical_key(key), value)


def build_run_config(
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[str] = (),
    base: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Resolve defaults -> base -> YAML file -> variant preset -> dotted overrides."""
    if not isinstance(overrides, Mapping):
        overrides = parse_overrides(overrides)
    data: dict[str, Any] = {}
    for key, value in flatten(dict(base or {})).items():
        set_dotted(data, key, value)
    source = ""
    if path is not None:
        source = str(path)
        for key, value in flatten(load_yaml(path)).items():
            set_dotted(data, key, value)
    overrides = dict(overrides)
    variant = overrides.pop("variant", data.get("variant"))
    if variant is not None:
        preset = presets.load(str(variant))
        model = data.setdefault("model", {})
        if not isinstance(model, dict):
            raise ConfigError(f"{source or 'config'}: 'model' must be a mapping")
        for key, value in flatten(preset).items():
            set_dotted(model, key, value)
        # An explicit model.* in the file or overrides beats the preset.
        for key, value in flatten(load_yaml(path)).items() if path else []:
            if key.startswith("model."):
                set_dotted(data, key, value)
        data["variant"] = str(variant)
    for key, value in overrides.items():
        set_dotted(data, key, value)
    return validate(RunConfig, data, source)

"""Named architecture presets: partial ModelConfigs stored as YAML in ``variants/``.

The top-level ``variants/`` folder is where users edit them; ``bench/variants``
links to it so the same files ship inside the wheel as package data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.config.errors import ConfigError
from bench.config.files import safe_load

PRESET_DIR = Path(__file__).resolve().parent.parent / "variants"


def names() -> list[str]:
    """Every preset name, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load(name_or_path: str) -> dict[str, Any]:
    """A preset as a dict of ModelConfig fields, by name or by YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") or not path.is_file():
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"variant={name_or_path!r}: no such preset; allowed: {', '.join(names())} "
            "or a path to a YAML file"
        )
    data = safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a preset is a mapping of model fields")
    data.pop("description", None)
    return data


def description(name: str) -> str:
    """The preset's one-line ``description`` field, if it has one."""
    data = safe_load((PRESET_DIR / f"{name}.yaml").read_text()) or {}
    return str(data.get("description", ""))

"""Dotted keys: flattening nested sections, setting ``a.b`` in a nested dict, and
``key=value`` command-line overrides read as YAML scalars."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from bench.config.errors import ConfigError, DuplicateKeyError
from bench.config.files import safe_load


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    """Set ``d["a"]["b"] = value`` for ``key="a.b"``, creating dicts on the way."""
    parts = key.split(".")
    for p in parts[:-1]:
        nxt = d.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{key}: '{p}' is a value, not a section")
        d = nxt
    d[parts[-1]] = value


def parse_value(text: str) -> Any:
    """A command-line value, read as a YAML scalar (``3e-4``, ``true``, ``[1, 2]``)."""
    try:
        return safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def parse_overrides(args: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "variant=llama"]`` -> ``{"a.b": 1, "variant": "llama"}``."""
    out: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise ConfigError(f"'{arg}': expected key=value (e.g. model.n_heads=8)")
        try:
            out[key.strip()] = parse_value(value)
        except DuplicateKeyError as e:
            raise ConfigError(f"'{arg}': {e}") from None
    return out

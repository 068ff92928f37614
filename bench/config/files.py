"""Reading and writing YAML configs: safe YAML 1.2 loading that refuses duplicate keys,
text files read with one-line errors (missing, a directory, too large, not UTF-8), and
the resolved config dumped back."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from bench.config.errors import ConfigError, DuplicateKeyError


class _Loader(yaml.SafeLoader):
    """Safe YAML, but ``3e-4`` is a float (YAML 1.2) rather than a string (YAML 1.1),
    and a key given twice in one mapping is an error (YAML 1.2 requires unique keys;
    PyYAML would let the last one silently win)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, typing.Hashable) and key in seen:
                raise DuplicateKeyError(
                    f"duplicate key '{key}' at line {line} (first at line {seen[key]}); "
                    "give each key once"
                )
            if isinstance(key, typing.Hashable):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2 floats; never constructs Python objects."""
    return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader


MAX_YAML_BYTES = 10 << 20  # a config or spec is a few KB; anything near this is a mistake


def read_text_file(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file's contents, or a ConfigError naming the path and the problem."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory; expected a YAML {what}")
    if not p.is_file():
        raise ConfigError(f"{p}: no such file")
    try:
        if p.stat().st_size > MAX_YAML_BYTES:
            raise ConfigError(
                f"{p}: {p.stat().st_size} bytes is too large for a YAML {what} "
                f"(allowed: up to {MAX_YAML_BYTES >> 20} MiB)"
            )
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{p}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); save it as UTF-8"
        ) from None


def load_yaml(path: str | Path, what: str = "config") -> dict[str, Any]:
    """Safe-load a YAML mapping, with one-line errors (encoding, syntax, shape, duplicates)."""
    p = Path(path)
    text = read_text_file(p, what)
    try:
        data = safe_load(text)
    except DuplicateKeyError as e:
        raise ConfigError(f"{p}: {e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{p}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a {what}") from None
    if data is None:
        raise ConfigError(
            f"{p}: the file is empty; expected a mapping of sections (e.g. 'model:', 'train:')"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping of sections, got {type(data).__name__}")
    return data


def dump_yaml(cfg: BaseModel) -> str:
    """The resolved config as YAML (what ``config.yaml`` in a run directory holds)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)

"""docs/config.md, the configuration reference, generated from the pydantic models.

Every key of a run config (:class:`bench.config.RunConfig`) and of a sweep spec
(:class:`bench.sweeps.spec.SweepSpec`) with its type or allowed values, its default
and the field's ``description``: the one text ``bench variants`` and validation
errors read too, so the page cannot drift from the code. Run by hand after a
config or spec field changes (``tests/test_docs_config.py`` fails until it is)::

    python tools/config_reference.py > docs/config.md

Lives in ``tools/`` because it reads both ``bench.config`` and ``bench.sweeps``,
and ``config`` may not import ``sweeps`` (ARCHITECTURE.md's layers).
"""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bench.config import RunConfig
from bench.sweeps.spec import Scalar, SweepSpec

COMMAND = "python tools/config_reference.py > docs/config.md"
_SCALAR = set(typing.get_args(Scalar))
_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}

HEADER = f"""# Configuration reference

Generated from the pydantic models by `{COMMAND}`; do not edit by hand
(`tests/test_docs_config.py` checks it is current). The descriptions are the
fields' own, the ones `bench variants` and the one-line validation errors read.

A **run config** is what `bench train` takes (`bench train CONFIG.yaml key=value ...`,
defaults -> file -> `variant=NAME` preset -> dotted overrides) and what a sweep
spec's `base`, `compare`, `tune.params` and `scale.ladder` set, by the same dotted
keys. A **sweep spec** is the YAML file `bench sweep` takes (`sweeps/`, `examples/`).
Unknown keys are errors in both. `null` is YAML's None: unset.
"""


def _type(ann: Any) -> str:
    """A field's annotation in words: Literals as their values, unions joined by ``or``."""
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is Literal:
        return "one of " + ", ".join(f"`{v}`" for v in args)
    if origin in (typing.Union, types.UnionType):
        if set(args) == _SCALAR:
            return "scalar"
        shown = [_type(a) for a in args]
        return " or ".join(f"({t})" if " of " in t and len(shown) > 1 else t for t in shown)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict:
        return "mapping" if args[1] is Any else f"mapping of {_type(args[0])} to {_type(args[1])}"
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return "section"
    return "null" if ann is type(None) else getattr(ann, "__name__", str(ann))


def _bounds(info: FieldInfo) -> str:
    """``>= 1``, ``> 0, <= 1``: the numeric constraints pydantic enforces."""
    out = [f"{_BOUNDS[k]} {getattr(m, k)}" for m in info.metadata for k in _BOUNDS if hasattr(m, k)]
    return f", {', '.join(out)}" if out else ""


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    elif info.default is PydanticUndefined:
        return "required"
    else:
        value = info.default
    if isinstance(value, BaseModel):
        return ""
    return f"`{json.dumps(value, ensure_ascii=False)}`"


def _sections(ann: Any) -> list[tuple[str, type[BaseModel]]]:
    """The sub-models a field holds, with the key suffix under which their fields appear
    (``""`` for a section or a list of them, ``.KEY`` for a mapping of them)."""
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return [("", ann)]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is dict:
        return [(".KEY", m) for _, m in _sections(args[1])]
    return [found for a in args for found in _sections(a)] if origin is not Literal else []


def _intro(model: type[BaseModel]) -> str:
    """The first paragraph of a model's docstring, on one line, in Markdown code marks."""
    first = " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())
    return re.sub(r":\w+:`([^`]+)`", r"`\1`", re.sub(r"``(.+?)``", r"`\1`", first))


def section(model: type[BaseModel], prefix: str, seen: dict[type, str]) -> list[str]:
    """The Markdown of ``model``'s fields under ``prefix``, then of its sub-models'.

    A model documented before (``search`` is a ``tune``) gets a pointer, not a copy."""
    seen[model] = prefix
    lines = [f"### `{prefix or model.__name__}`", "", _intro(model), ""]
    lines += ["| key | type | default | description |", "|---|---|---|---|"]
    nested: list[tuple[str, type[BaseModel]]] = []
    for name, info in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        kind = _type(info.annotation) + _bounds(info)
        for suffix, sub in dict.fromkeys(_sections(info.annotation)):  # Objective | list[...]
            if sub in seen:
                kind += f", keys as `{seen[sub]}`"
            else:
                seen[sub] = key + suffix
                nested.append((key + suffix, sub))
        text = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{key}` | {kind} | {_default(info)} | {text} |")
    lines.append("")
    for key, sub in nested:
        lines += section(sub, key, seen)
    return lines


def reference() -> str:
    """The whole of docs/config.md."""
    lines = [HEADER, "## Run config", ""]
    lines += section(RunConfig, "", {})
    lines += ["## Sweep spec", ""]
    lines += section(SweepSpec, "", {})
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(reference(), end="")

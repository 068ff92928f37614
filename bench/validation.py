"""One line for a pydantic ValidationError: what is wrong, where, and what is allowed.

Every typed file and option of bench is a pydantic model: run configs
(:mod:`bench.config`), sweep specs (:mod:`bench.sweeps.spec`), the Slurm launcher
options (:mod:`bench.sweeps.slurm.launcher`) and claim files (:mod:`bench.claims.spec`).
Their errors are all reported by :func:`describe`, from the first error pydantic
found, in one of these shapes::

    SOURCE: unknown key 'model.colour'; allowed: arch, d_model, ...
    SOURCE: model.pos_encoding='xpos': allowed: 'sinusoidal', 'learned', ...
    SOURCE: launcher.mem='lots': allowed: a number with an optional K/M/G/T suffix, e.g. 16G
    SOURCE: model.d_model=-8: Input should be greater than or equal to 1
    SOURCE: tune.params.train.lr: low=0.1 > high=0.01

The allowed keys come from the model's fields; the allowed form of a string
field with a ``pattern`` comes from that field's ``description``. Plain Python
and pydantic only, so any reader of files may import it.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

__all__ = ["describe"]


def describe(
    err: ValidationError,
    model: type[BaseModel],
    source: str = "",
    *,
    prefix: str = "",
    where: Callable[[str], str] | None = None,
) -> str:
    """The first error of ``err`` (raised validating ``model``) as one line.

    ``source``: what was read (a file name), put first. ``prefix``: the key of
    ``model`` inside a larger file (``launcher`` for the Slurm options).
    ``where``: renames a location for the user (a command-line flag for a key).
    """
    e = err.errors()[0]
    loc = _without_union_tags(model, tuple(e["loc"]))
    key = ".".join(str(p) for p in (*([prefix] if prefix else []), *loc))
    shown = where(key) if where else key
    head = f"{source}: " if source else ""
    kind = e["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = _did_you_mean(model, loc)
        guess = ".".join(p for p in (prefix, hint) if p) if hint else ""
        return (
            f"{head}unknown key '{shown}'"
            + (f" (did you mean '{where(guess) if where else guess}'?)" if guess else "")
            + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        )
    msg = str(e["msg"])
    if kind in ("value_error", "assertion_error"):
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        # A validator's message that already names its key is not prefixed twice.
        named = not shown or msg.startswith((f"{shown}.", f"{shown}=", f"{shown}:"))
        return f"{head}{msg}" if named else f"{head}{shown}: {msg}"
    if kind in ("literal_error", "enum"):
        msg = msg.replace("Input should be", "allowed:")
    elif kind == "string_pattern_mismatch":
        form = _description(model, loc)
        msg = f"allowed: {form}" if form else msg
    value = e.get("input")
    value_text = "" if isinstance(value, Mapping | list) else f"={value!r}"
    return f"{head}{shown}{value_text}: {msg}"


# ----------------------------------------------------------------------------- the schema


def _did_you_mean(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The key an unknown one was probably meant to be: a close spelling among its
    siblings (``model.d_modle`` -> ``model.d_model``), or a field of a section given
    without the section (``d_model`` -> ``model.d_model``)."""
    name, parent = str(loc[-1]), loc[:-1]
    siblings = _allowed_keys(model, parent)
    for section in siblings:
        if name in _allowed_keys(model, (*parent, section)):
            return ".".join(str(p) for p in (*parent, section, name))
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.8)
    return ".".join(str(p) for p in (*parent, close[0])) if close else None


def _allowed_keys(model: type[BaseModel], parent: tuple[Any, ...]) -> list[str]:
    """The field names of the model at ``parent`` (empty when that is not a model)."""
    node = _follow(model, parent)
    found = _model_in(node)
    return sorted(found.model_fields) if found else []


def _description(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """The ``description`` of the field at ``loc`` ('' when it has none)."""
    owner = _model_in(_follow(model, loc[:-1]))
    field = owner.model_fields.get(str(loc[-1])) if owner and loc else None
    return field.description or "" if field else ""


def _without_union_tags(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """The location without the member names pydantic puts in it for a union
    (``objective.Objective.direction`` is the user's ``objective.direction``)."""
    out: list[Any] = []
    node: Any = model
    for part in loc:
        member = _member(node, part) if _is_union(node) else None
        if member is not None:
            node = member
            continue
        out.append(part)
        node = _step(node, part) if node is not None else None
    return tuple(out)


def _is_union(node: Any) -> bool:
    return get_origin(node) in (Union, types.UnionType)


def _member(node: Any, tag: Any) -> Any:
    """The member of a union whose name pydantic used as a location tag (None if none)."""
    for arg in get_args(node):
        if isinstance(arg, type) and arg.__name__ == str(tag):
            return arg
        if get_origin(arg) is not None and _short(arg) == str(tag):
            return arg
    return None


def _short(annotation: Any) -> str:
    """pydantic's name of a generic member: ``list[Objective]``."""
    args = ", ".join(a.__name__ if isinstance(a, type) else _short(a) for a in get_args(annotation))
    return f"{get_origin(annotation).__name__}[{args}]"


def _follow(annotation: Any, path: tuple[Any, ...]) -> Any:
    """The annotation reached from ``annotation`` along an error location (None if lost)."""
    node = annotation
    for part in path:
        node = _step(node, part)
        if node is None:
            return None
    return node


def _step(node: Any, part: Any) -> Any:
    """One step of a location: a model's field, a dict's value, a list's item, a union's member."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        field = node.model_fields.get(str(part))
        return field.annotation if field else None
    origin, args = get_origin(node), get_args(node)
    if origin is Annotated:
        return _step(args[0], part)
    if origin in (Union, types.UnionType):
        member = _member(node, part)
        if member is not None:
            return member  # pydantic names the union member it tried
        for arg in args:
            found = _step(arg, part)
            if found is not None:
                return found
        return None
    if origin is dict:
        return args[1] if len(args) == 2 else None
    if origin is list:
        return args[0] if args else None
    return None


def _model_in(node: Any) -> type[BaseModel] | None:
    """The pydantic model an annotation holds (itself, or a member of ``X | None``)."""
    if isinstance(node, type) and issubclass(node, BaseModel):
        return node
    if get_origin(node) in (Union, types.UnionType, Annotated):
        for arg in get_args(node):
            found = _model_in(arg)
            if found is not None:
                return found
    return None

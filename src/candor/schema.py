"""Typed dataclasses from JSON documents, validated by pydantic, with errors that name the field.

The dataclasses stay plain (frozen, comparable, cheap to build in the trainer); pydantic checks a
document against their annotations in strict JSON mode: no string for a number, no ``true`` for a
count, no unknown field. Constraints that belong to one field (``Annotated[int, Field(ge=1)]``) are
declared on it and appear in the published JSON Schema (``docs/manifest.schema.json``); rules that
span fields stay with the document's reader.

>>> parse(Point, {"x": 1, "y": "2"})                       # doctest: +SKIP
SchemaError: field 'y' must be a valid number, got '2'
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
import typing
from typing import Any, TypeVar, Union

from pydantic import ConfigDict, TypeAdapter, ValidationError

D = TypeVar("D")
_SHOULD = re.compile(r"^\w+ should ")
_SHOWN = 3  # errors a message lists before "and N more"
# A document class sets ``__pydantic_config__ = STRICT``; the dataclasses it nests inherit it.
STRICT = ConfigDict(strict=True, extra="forbid")


class SchemaError(ValueError):
    """A document does not match its schema; the message names the field.

    ``problems`` holds (top-level field, message) for each wrong field pydantic found, so that a
    caller merging several sources can say which source each came from."""

    def __init__(self, message: str, problems: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.problems = problems


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    if getattr(cls, "__pydantic_config__", None) != STRICT:
        raise TypeError(f"{cls.__name__} must set __pydantic_config__ = STRICT")
    return TypeAdapter(cls)


def parse(cls: type[D], data: Any) -> D:
    """``cls`` built from the JSON value ``data``, nothing converted; SchemaError naming the first
    fields that are wrong."""
    try:
        text = json.dumps(data)  # NaN and Infinity pass as JSON's extensions; the reader's rules say where they may not
    except (TypeError, ValueError) as e:
        raise SchemaError(f"the document is not JSON: {e}") from None
    try:
        return _adapter(cls).validate_json(text)
    except ValidationError as e:
        raise _schema_error(cls, e) from None


def parse_strings(cls: type[D], data: dict[str, str]) -> D:
    """``cls`` built from text values (environment variables): "8001" is read as an int where one is
    wanted, "yes" and "off" as booleans. Fields ``data`` does not name keep their defaults."""
    try:
        return _adapter(cls).validate_python(data, strict=False)
    except ValidationError as e:
        raise _schema_error(cls, e) from None


def json_schema(cls: type) -> dict:
    """The JSON Schema (draft 2020-12) a document of ``cls`` must satisfy: every object closed, as the
    reader is (pydantic marks only the outer class, whose config the nested ones inherit)."""
    schema = _adapter(cls).json_schema()
    for part in [schema, *schema.get("$defs", {}).values()]:
        if "properties" in part:
            part["additionalProperties"] = False
    return schema


def _schema_error(cls: type, error: ValidationError) -> SchemaError:
    problems = tuple(dict.fromkeys((str(e["loc"][0]) if e["loc"] else "", _describe_one(cls, e))
                                   for e in error.errors(include_url=False)))  # fmt: skip
    more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
    return SchemaError("; ".join(message for _, message in problems[:_SHOWN]) + more, problems)


def _describe_one(cls: type, e: dict) -> str:
    loc, kind = tuple(e["loc"]), e["type"]
    got = _short(e.get("input"))
    if not loc:
        return f"the document must be an object, got {type(e.get('input')).__name__}"
    path, where, members = _locate(cls, loc)
    if kind == "missing":
        return f"missing field '{path}'"
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        allowed = ", ".join(f.name for f in dataclasses.fields(where)) if dataclasses.is_dataclass(where) else ""
        return f"unknown field '{path}'" + (f" (allowed here: {allowed})" if allowed else "")
    if members:  # pydantic tried each member of a union: one message for the field
        return f"field '{path}' must be one of {', '.join(_name(m) for m in members)}, got {got}"
    # pydantic's "Input should be a valid integer", "String should match pattern '...'": what it must be
    return f"field '{path}' {_SHOULD.sub('must ', e['msg'], count=1)}, got {got}"


def _locate(cls: type, loc: tuple) -> tuple[str, Any, tuple]:
    """The dotted path of ``loc``, the type holding its last key, and the union members pydantic named
    on the way (its tags are not fields)."""
    t: Any = cls
    holder: Any = cls
    path = ""
    members: tuple = ()
    for key in loc:
        t = _without_none(t)
        options = _union_members(t)
        if options:
            members = options
            t = next((o for o in options if _name(o) == key), Any)
            continue
        holder, members = t, ()
        if dataclasses.is_dataclass(t) and isinstance(key, str):
            t = typing.get_type_hints(t).get(key, Any)
        elif typing.get_origin(t) in (list, dict):
            t = typing.get_args(t)[-1]
        else:
            t = Any
        path += f"[{key}]" if isinstance(key, int) else (f".{key}" if path else str(key))
    return path, _without_none(holder), members


def _union_members(t: Any) -> tuple:
    if typing.get_origin(t) in (Union, types.UnionType):
        return typing.get_args(t)
    return ()


def _without_none(t: Any) -> Any:
    options = [a for a in _union_members(t) if a is not type(None)]
    return options[0] if len(options) == 1 else t


def _name(t: Any) -> str:
    return "null" if t is type(None) else getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."

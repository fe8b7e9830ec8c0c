"""Build typed dataclasses from JSON-like dicts, refusing anything unexpected.

Every error names the dotted path of the offending field, so that a broken
manifest says exactly what to fix. Supported annotations: ``int``, ``float``
(ints accepted), ``str``, ``bool``, ``list[T]``, ``dict[str, T]``,
``Literal[...]``, ``T | None`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, TypeVar, Union

D = TypeVar("D")


class SchemaError(ValueError):
    """A document does not match its schema; the message names the field."""


def _describe(t: Any) -> str:
    return getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _convert(value: Any, t: Any, path: str) -> Any:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin in (Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise SchemaError(f"field '{path}' must not be null")
        options = [a for a in args if a is not type(None)]
        for inner in options:
            try:
                return _convert(value, inner, path)
            except SchemaError:
                if len(options) == 1:
                    raise
        raise SchemaError(f"field '{path}' must be one of {', '.join(_describe(a) for a in options)}, got {value!r}")
    if value is None:
        raise SchemaError(f"field '{path}' must not be null (expected {_describe(t)})")
    if origin is Literal:
        if value not in args:
            raise SchemaError(f"field '{path}' must be one of {list(args)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise SchemaError(f"field '{path}' must be a list, got {type(value).__name__}")
        return [_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"field '{path}' must be an object, got {type(value).__name__}")
        return {str(k): _convert(v, args[1], f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(t):
        return from_dict(t, value, path)
    if t is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SchemaError(f"field '{path}' must be a number, got {value!r}")
        return float(value)
    if t in (int, str, bool):
        # bool is an int in Python; a manifest saying `true` for a count is wrong.
        if not isinstance(value, t) or (t is int and isinstance(value, bool)):
            raise SchemaError(f"field '{path}' must be {t.__name__}, got {value!r}")
        return value
    if t is Any:
        return value
    raise TypeError(f"unsupported annotation {t!r} at {path}")


def from_dict(cls: type[D], data: Any, path: str = "") -> D:
    """Build ``cls`` from ``data``; missing, unknown or mistyped fields raise SchemaError."""
    where = f"'{path}'" if path else "the document"
    if not isinstance(data, dict):
        raise SchemaError(f"{where} must be an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        full = f"{path}.{unknown[0]}" if path else unknown[0]
        raise SchemaError(f"unknown field '{full}' (allowed here: {', '.join(names)})")
    values = {}
    for name in names:
        full = f"{path}.{name}" if path else name
        if name not in data:
            raise SchemaError(f"missing field '{full}'")
        values[name] = _convert(data[name], hints[name], full)
    return cls(**values)

"""Typed config files: a msgspec schema per file, errors that name the file and the path.

``convert(data, Schema, source)`` checks a parsed TOML document against a msgspec ``Struct``
(``forbid_unknown_fields``, ``Literal`` choices, ``msgspec.Meta`` constraints) and turns
msgspec's ``ValidationError`` into one ``ConfigError`` line in the file's own terms:

    policy.toml: signals."geo.new_country".mode: expected one of enforce, log, got "huge"

msgspec reports a table keyed by user-chosen names as ``$.signals[...]``; the key is found
here by checking the table's entries one by one, so the message names it.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import msgspec

from core.errors import ConfigError

T = TypeVar("T")
PathPart = str | int
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")  # ref: toml.io/en/v1.0.0#keys (bare keys)
_KINDS = {"float": "a number", "int": "an integer", "str": "a string", "bool": "true or false",
          "array": "a list", "object": "a table"}  # fmt: skip
_UNSET = object()


def convert(data: Any, schema: type[T], source: str) -> T:
    """``data`` as ``schema``; ``ConfigError`` naming ``source`` and the failing path."""
    try:
        return msgspec.convert(data, schema)
    except msgspec.ValidationError as exc:
        raise _explain(str(exc), data, schema, source) from exc


def fail(source: str, path: Sequence[PathPart], message: str) -> ConfigError:
    """A ConfigError for a check the schema cannot express (same shape as schema errors)."""
    where = dotted(path)
    return ConfigError(f"{source}: {where}: {message}" if where else f"{source}: {message}")


def dotted(path: Sequence[PathPart]) -> str:
    """A path as TOML writes it: ``signals."geo.new_country".mode``, ``allow[0].cidrs``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            name = part if _BARE_KEY.match(part) else json.dumps(part)
            out += f".{name}" if out else name
    return out


def shown(value: Any) -> str:
    """A value as it would be written in the file (strings quoted)."""
    try:
        return json.dumps(value, default=str)
    except ValueError:
        return repr(value)


def _explain(text: str, data: Any, schema: Any, source: str) -> ConfigError:
    m = _AT.match(text)
    message, raw_path = (m["msg"], m["path"] or "") if m else (text, "")
    path, value, kind = _walk(raw_path, data, schema)
    unknown = re.match(r"Object contains unknown field `(.+)`$", message)
    missing = re.match(r"Object missing required field `(.+)`$", message)
    if unknown:
        known = ", ".join(f.encode_name for f in _fields(kind))
        return fail(source, [*path, unknown[1]], f"unknown setting (known: {known})")
    if missing:
        return fail(source, [*path, missing[1]], "missing (required)")
    choices = _choices(kind)
    if message.startswith("Invalid enum value") and choices:
        expected = ", ".join(str(c) for c in choices)
        return fail(source, path, f"expected one of {expected}, got {shown(value)}")
    message = re.sub(r"`([\w |]+)`", _kind, message.split(", got ")[0])
    got = f", got {shown(value)}" if value is not _UNSET else ""
    return fail(source, path, message[:1].lower() + message[1:] + got)


def _kind(match: re.Match[str]) -> str:
    """msgspec's type names in words: `array | null` -> a list."""
    names = [n for n in match[1].split(" | ") if n != "null"]
    return " or ".join(_KINDS.get(n, n) for n in names)


def _walk(raw_path: str, data: Any, kind: Any) -> tuple[list[PathPart], Any, Any]:
    """Follow msgspec's ``.field[0][...]`` path through the data and the schema together:
    the readable path, the value found there and its expected type."""
    path: list[PathPart] = []
    for name, index in _TOKEN.findall(raw_path):
        kind = _unwrap(kind)
        if name:
            field = next((f for f in _fields(kind) if f.encode_name == name), None)
            kind = field.type if field else Any
            data = data.get(name, _UNSET) if isinstance(data, Mapping) else _UNSET
            path.append(name)
        elif index == "...":
            value_type = get_args(kind)[1] if get_origin(kind) is dict else Any
            key = _failing_key(data, value_type)
            data = data[key] if key is not None else _UNSET
            kind = value_type
            path.append(key if key is not None else "...")
        else:
            items = get_args(kind)
            kind = items[0] if items else Any
            data = data[int(index)] if isinstance(data, list) and int(index) < len(data) else _UNSET
            path.append(int(index))
    return path, data, _unwrap(kind)


def _failing_key(table: Any, value_type: Any) -> str | None:
    """The first entry of ``table`` that does not fit ``value_type`` (msgspec's order)."""
    if not isinstance(table, Mapping):
        return None
    for key, value in table.items():
        try:
            msgspec.convert(value, value_type)
        except msgspec.ValidationError:
            return str(key)
    return None


def _unwrap(kind: Any) -> Any:
    """The type behind ``Annotated[...]`` and ``X | None``."""
    while True:
        origin = get_origin(kind)
        if origin is Annotated:
            kind = get_args(kind)[0]
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(kind) if a is not type(None)]
            if len(rest) != 1:
                return kind
            kind = rest[0]
        else:
            return kind


def _fields(kind: Any) -> tuple[msgspec.structs.FieldInfo, ...]:
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
        return msgspec.structs.fields(kind)
    return ()


def _choices(kind: Any) -> tuple[Any, ...]:
    return get_args(kind) if get_origin(kind) is Literal else ()

"""A small validator for the subset of JSON Schema that a model's interface may use.

Why not the `jsonschema` package: this module runs inside every model's `model.pex`, whose only
dependencies are the model's own, and the runtime is standard library only. `jsonschema` would
add attrs, referencing and the compiled rpds-py to every model (and one more lock to keep in
step). An interface needs little of JSON Schema, so the build refuses any keyword outside the
subset below (`schema_problem`) rather than silently ignoring it: a keyword that is accepted but
not enforced would be a check that is written down and never made.

Supported keywords: type (a name or a list of names), properties, required,
additionalProperties (true, false or a schema), items (one schema), minItems, maxItems, enum,
const, minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers, as in draft 2020-12),
minLength, maxLength, pattern (Python `re`, searched), and the annotations $schema, $id,
$comment, title, description, default, examples. No $ref, no combinators (allOf, anyOf, oneOf,
not), no formats.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["SUPPORTED_KEYWORDS", "schema_problem", "validate"]

_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$comment", "title", "description", "default", "examples"}
)
_ASSERTIONS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "minItems",
        "maxItems", "enum", "const", "minimum", "maximum", "exclusiveMinimum",
        "exclusiveMaximum", "minLength", "maxLength", "pattern",
    }
)
SUPPORTED_KEYWORDS = _ANNOTATIONS | _ASSERTIONS
_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def schema_problem(schema: object, path: str = "") -> str | None:  # noqa: PLR0911, PLR0912
    """The first reason `schema` is outside the supported subset ("<path>: <problem>"), or None.
    Run at build time, so that an interface the runtime could not enforce is never packaged."""
    where = path or "(root)"
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, Mapping):
        return f"{where}: a schema is an object or a boolean"
    for key in sorted(schema):
        if key not in SUPPORTED_KEYWORDS:
            return (
                f"{where}: the keyword {key!r} is not supported (supported: "
                f"{', '.join(sorted(_ASSERTIONS))})"
            )
    kind = schema.get("type")
    names = kind if isinstance(kind, list) else [kind] if kind is not None else []
    if any(name not in _TYPES for name in names):
        return f"{where}: type must be one of {', '.join(_TYPES)}"
    for key in ("minItems", "maxItems", "minLength", "maxLength"):
        if key in schema and not _is_count(schema[key]):
            return f"{where}: {key} must be a non-negative integer"
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in schema and not _is_number(schema[key]):
            return f"{where}: {key} must be a number"
    if "enum" in schema and not isinstance(schema["enum"], list):
        return f"{where}: enum must be an array"
    if "required" in schema and not (
        isinstance(schema["required"], list)
        and all(isinstance(name, str) for name in schema["required"])
    ):
        return f"{where}: required must be an array of strings"
    if "pattern" in schema:
        try:
            re.compile(schema["pattern"])
        except (re.error, TypeError) as e:
            return f"{where}: pattern is not a regular expression: {e}"
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        return f"{where}: properties must be an object"
    for name, sub in sorted(properties.items()):
        problem = schema_problem(sub, f"{path}.properties.{name}" if path else f"properties.{name}")
        if problem:
            return problem
    for key in ("additionalProperties", "items"):
        if key in schema:
            problem = schema_problem(schema[key], f"{path}.{key}" if path else key)
            if problem:
                return problem
    return None


def _is_integer(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPE_CHECKS: dict[str, Callable[[object], bool]] = {
    "null": lambda value: value is None,
    "boolean": lambda value: isinstance(value, bool),
    "object": lambda value: isinstance(value, Mapping),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "integer": _is_integer,
    "number": _is_number,
}


def _type_matches(value: object, name: str) -> bool:
    return _TYPE_CHECKS[name](value)


def _at(path: str) -> str:
    return path or "the input"


def validate(value: Any, schema: Any, path: str = "") -> str | None:  # noqa: PLR0911, PLR0912
    """The first way `value` breaks `schema` ("<json path>: <problem>"), or None when it holds.
    `schema` must have passed `schema_problem`."""
    if schema is True:
        return None
    if schema is False:
        return f"{_at(path)}: no value is allowed here"
    kind = schema.get("type")
    if kind is not None:
        names = kind if isinstance(kind, list) else [kind]
        if not any(_type_matches(value, name) for name in names):
            return f"{_at(path)}: expected {' or '.join(names)}, found {_kind(value)}"
    if "const" in schema and value != schema["const"]:
        return f"{_at(path)}: must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{_at(path)}: must be one of {schema['enum']!r}"
    if _is_number(value):
        for key, holds in (
            ("minimum", lambda v, b: v >= b),
            ("maximum", lambda v, b: v <= b),
            ("exclusiveMinimum", lambda v, b: v > b),
            ("exclusiveMaximum", lambda v, b: v < b),
        ):
            if key in schema and not holds(value, schema[key]):
                return f"{_at(path)}: {value} breaks {key} {schema[key]}"
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            return f"{_at(path)}: shorter than {schema['minLength']} characters"
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            return f"{_at(path)}: longer than {schema['maxLength']} characters"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return f"{_at(path)}: does not match {schema['pattern']!r}"
    if isinstance(value, list):
        if "minItems" in schema and len(value) < schema["minItems"]:
            return f"{_at(path)}: fewer than {schema['minItems']} items"
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            return f"{_at(path)}: more than {schema['maxItems']} items"
        if "items" in schema:
            for index, item in enumerate(value):
                problem = validate(item, schema["items"], f"{path}[{index}]")
                if problem:
                    return problem
    if isinstance(value, Mapping):
        for name in schema.get("required", ()):
            if name not in value:
                return f"{_at(path)}: the property {name!r} is required"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for name in sorted(value):
            sub = properties.get(name, extra)
            problem = validate(value[name], sub, f"{path}.{name}" if path else name)
            if problem:
                if sub is False:
                    return f"{_at(path)}: the property {name!r} is not allowed"
                return problem
    return None


def _kind(value: object) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _type_matches(value, name):
            return name
    return type(value).__name__

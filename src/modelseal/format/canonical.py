"""Canonical JSON: one byte sequence for one value.

Manifests are hashed and signed, and bundles must be byte-identical across machines, so the JSON
modelseal writes may depend only on the value: keys sorted, no insignificant whitespace, UTF-8
without escapes, and one trailing newline so the files read well with `cat`. Values JSON cannot
represent exactly (NaN, infinities, non-string keys) are refused rather than silently coerced by
`json.dumps` into something another parser reads differently; the error names the value's path so
the user can find it in their own metadata. Reading is as strict, so that a document has one
meaning: duplicate keys, NaN and invalid UTF-8, which parsers resolve differently, are errors.

Standard library only: `model.pex` imports this module on hosts that have nothing but Python.
"""

from __future__ import annotations

import json
import math

__all__ = ["canonical_json", "join_path", "load_json"]


def join_path(parent: str, key: str | int) -> str:
    """The path of a child value, as error messages show it: `metrics.accuracy`, `files[3].size`."""
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _check(value: object, path: str) -> None:
    where = path or "(top level)"
    # bool is an int: test it before numbers so True never passes as 1.
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number, which JSON cannot hold")
        return
    if isinstance(value, str):
        _check_text(value, where)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, join_path(path, index))
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: key {key!r} is not a string")
            _check_text(key, where)
            _check(item, join_path(path, key))
        return
    raise ValueError(f"{where}: a {type(value).__name__} is not a JSON value")


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{where}: {text!r} is not encodable as UTF-8 ({e.reason})") from None


def canonical_json(obj: object) -> bytes:
    """The canonical encoding of `obj`; ValueError naming the path of anything JSON cannot hold."""
    _check(obj, "")
    text = json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return text.encode("utf-8") + b"\n"


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a JSON value")


def load_json(data: bytes) -> object:
    """Parse one UTF-8 JSON document; ValueError for anything two parsers could read differently."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8: byte {e.start} is invalid") from None
    try:
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except RecursionError:
        # json's parser recurses once per nesting level: a hostile document nested a few
        # thousand deep would end in a traceback, not in the caller's one-line error.
        raise ValueError("nested too deeply") from None

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelseal.format.canonical import canonical_json, load_json


def test_sorted_compact_utf8_with_newline() -> None:
    value = {"b": [1, 2.5, None, True], "a": {"z": "é", "y": "\u2603"}, "": 0}
    assert canonical_json(value) == (
        '{"":0,"a":{"y":"\u2603","z":"é"},"b":[1,2.5,null,true]}\n'.encode()
    )


def test_keys_sort_by_code_point_which_is_utf8_byte_order() -> None:
    keys = ["\U0001f600", "\uffff", "z", "Z", "é"]
    encoded = canonical_json(dict.fromkeys(keys, 0))
    order = list(json.loads(encoded))
    assert order == sorted(keys, key=lambda k: k.encode("utf-8"))


def test_tuples_are_arrays_and_ints_stay_ints() -> None:
    assert canonical_json({"a": (1, 1.0)}) == b'{"a":[1,1.0]}\n'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"metrics": {"accuracy": math.nan}}, "metrics.accuracy: nan is not a finite number"),
        ({"a": [1, {"b": math.inf}]}, "a[1].b: inf is not a finite number"),
        ([-math.inf], "[0]: -inf is not a finite number"),
        ({"metrics": {1: 2}}, "metrics: key 1 is not a string"),
        ({"a": {"b": {3.0}}}, "a.b: a set is not a JSON value"),
        ({"a": b"x"}, "a: a bytes is not a JSON value"),
        ({"a": "\udc80"}, "a: '\\udc80' is not encodable as UTF-8"),
        (math.nan, "(top level): nan is not a finite number"),
    ],
)
def test_rejects_with_the_path(value: object, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        canonical_json(value)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"a":1,"a":2}', "duplicate key 'a'"),
        (b'{"a":NaN}', "NaN is not a JSON value"),
        (b"[Infinity]", "Infinity is not a JSON value"),
        (b'{"a":"\xff"}', "not UTF-8: byte 6 is invalid"),
    ],
)
def test_load_json_refuses_ambiguous_documents(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_json(data)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20,
)


def _reordered(value: Any, rng: st.DataObject) -> Any:
    if isinstance(value, dict):
        items = rng.draw(st.permutations(list(value.items())))
        return {key: _reordered(item, rng) for key, item in items}
    if isinstance(value, list):
        return [_reordered(item, rng) for item in value]
    return value


@given(json_values, st.data())
def test_bytes_depend_only_on_content_not_insertion_order(value: Any, data: st.DataObject) -> None:
    assert canonical_json(_reordered(value, data)) == canonical_json(value)


@given(json_values)
def test_round_trips(value: Any) -> None:
    encoded = canonical_json(value)
    assert load_json(encoded) == value
    assert canonical_json(load_json(encoded)) == encoded

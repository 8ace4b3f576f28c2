"""runtime.jsonline: compact UTF-8 JSON lines that are always valid JSON."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.jsonline import dumps, dumps_line, loads_object


def test_compact_utf8_with_newline() -> None:
    """Separators without spaces, non-ASCII kept as UTF-8, one trailing newline."""
    assert dumps_line({"a": 1, "msg": "héllo ✓"}) == '{"a":1,"msg":"héllo ✓"}\n'.encode()


def test_non_finite_floats_become_null() -> None:
    """JSON has no NaN or Infinity; they are written as null, nested ones too."""
    line = dumps_line({"x": math.nan, "y": [1.5, math.inf], "z": {"w": -math.inf}})
    assert json.loads(line) == {"x": None, "y": [1.5, None], "z": {"w": None}}


def test_unknown_types_are_written_as_text() -> None:
    """Values JSON has no type for are written with str(), never an exception."""
    assert json.loads(dumps_line({"s": frozenset({1}), "b": b"x"})) == {
        "s": "frozenset({1})",
        "b": "b'x'",
    }


def test_lone_surrogate_is_escaped_not_dropped() -> None:
    """A lone surrogate cannot be UTF-8; the record is escaped instead and stays valid JSON."""
    value = loads_object(b'{"m": "a\\ud800b"}')
    assert value == {"m": "a\ud800b"}
    line = dumps_line(value)
    assert line == b'{"m":"a\\ud800b"}\n'
    assert json.loads(line) == value


@pytest.mark.parametrize(
    "raw",
    [b"[1, 2]", b'"text"', b"{bad", b'{"a": NaN}', b'{"a": Infinity}', b'{"a": "\xff"}', b""],
    ids=["array", "string", "broken", "nan", "infinity", "invalid-utf8", "empty"],
)
def test_loads_object_only_takes_json_objects(raw: bytes) -> None:
    """Anything but a strict JSON object (no NaN, valid UTF-8) is not an object."""
    assert loads_object(raw) is None


def test_loads_object_survives_deep_nesting() -> None:
    """Nesting deeper than the parser's recursion limit is 'not an object', not a crash."""
    assert loads_object(b"[" * 100_000 + b"]" * 100_000) is None
    with pytest.raises(RecursionError):
        dumps({"a": _nested(100_000)})


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
def test_every_record_is_one_valid_json_line(record: dict[str, object]) -> None:
    """Whatever the values (NaN, surrogates, control characters), one valid JSON line out."""
    line = dumps_line(record)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    parsed = json.loads(line.decode())
    assert set(parsed) == set(record)

"""JSON in and out for the master: compact lines, UTF-8, never `NaN`, never a crash.

The standard library's C encoder and scanner (`_json`, what `json` itself runs on) do
the work, called directly: importing the `json` package compiles its regular
expressions and imports `re`, which cost the master several milliseconds of start-up
before its first worker line (bench/RESULTS.md, "Start-up"). `json` is imported only
to word an error, or where `_json` is missing (other Python implementations). A
third-party encoder was measured no faster end to end here (the log hot path splices
whole blocks in C and encodes one record per block) and cost start-up time and memory.

- Output is compact (`{"a":1}`), keeps non-ASCII text as UTF-8, and writes values
  JSON has no type for with `str()`, as the log format promises.
- Infinite and NaN floats become `null` (JSON has no spelling for them); `NaN` and
  `Infinity` are not accepted on input either.
- A lone surrogate (`"\\ud800"` read from a worker's JSON line) cannot be UTF-8; such a
  record is written with `\\u` escapes instead, which is still valid JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

_WHITESPACE = " \t\n\r"  # what JSON allows around a value
_INFINITY = float("inf")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


class _ScanContext:
    """The settings `_json.make_scanner` reads (those of `json.JSONDecoder()`)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_reject_constant)


def _c_encoder(ascii_only: bool) -> Callable[[object], str] | None:
    try:
        from _json import encode_basestring, encode_basestring_ascii, make_encoder
    except ImportError:
        return None
    strings = encode_basestring_ascii if ascii_only else encode_basestring
    # markers=None: no cycle check (records never have cycles; depth ends in RecursionError)
    chunks = make_encoder(None, str, strings, None, ":", ",", False, False, False)
    return lambda value: "".join(chunks(value, 0))


def _py_encoder(ascii_only: bool) -> Callable[[object], str]:
    import json

    return json.JSONEncoder(
        ensure_ascii=ascii_only, separators=(",", ":"), default=str, allow_nan=False
    ).encode


def _make_scanner() -> Callable[[str, int], tuple[object, int]] | None:
    try:
        from _json import make_scanner
    except ImportError:
        return None
    return make_scanner(_ScanContext())  # type: ignore[arg-type]


_encode = _c_encoder(False) or _py_encoder(False)
_encode_ascii = _c_encoder(True) or _py_encoder(True)
_scan = _make_scanner()
_FAILED = object()


def _finite(value: object) -> object:
    """`value` with every non-finite float (nested in dicts, lists, tuples) as None."""
    if isinstance(value, float):
        return value if -_INFINITY < value < _INFINITY else None  # nan fails both
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def dumps(value: object) -> str:
    """Compact JSON text; raises RecursionError for structures nested beyond the stack."""
    try:
        return _encode(value)
    except ValueError:  # a NaN or an infinity somewhere
        return _encode(_finite(value))


def dumps_line(value: object) -> bytes:
    """`dumps(value)` plus a newline, as UTF-8 bytes."""
    text = dumps(value) + "\n"
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: escape everything instead
        try:
            return (_encode_ascii(value) + "\n").encode()
        except ValueError:
            return (_encode_ascii(_finite(value)) + "\n").encode()


def _quick_loads(text: str) -> object:
    """The value of `text`, or `_FAILED` when it is not exactly one JSON value."""
    if _scan is None:
        return _FAILED
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    # StopIteration: no value at `start`. SystemError: Python 3.11's scanner words its
    # errors with json.decoder's exception class, which only exists once `json` is
    # imported; `loads` then lets `json` word the error.
    except (StopIteration, ValueError, SystemError):
        return _FAILED
    return value if not text[end:].strip(_WHITESPACE) else _FAILED


def loads(data: bytes | str) -> object:
    """Parse JSON; raises ValueError (json's JSONDecodeError with line and column when the
    text is malformed) or RecursionError when it is nested too deep."""
    text = data.decode() if isinstance(data, bytes) else data
    value = _quick_loads(text)
    if value is not _FAILED:
        return value
    import json  # only to word the error

    return json.loads(text, parse_constant=_reject_constant)


def loads_object(data: bytes | str) -> dict[str, object] | None:
    """The JSON object in `data`, or None when it is not one (or not JSON at all)."""
    try:
        value = _quick_loads(data.decode() if isinstance(data, bytes) else data)
    except (UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None

"""JSON in and out for the master: compact lines, UTF-8, never `NaN`, never a crash.

The standard library's C encoder and decoder (`_json`) do the work. A third-party
encoder was measured no faster here end to end (the log hot path splices whole blocks
in C and encodes one record per block), and importing one cost start-up time and about
1 MB of resident memory (bench/RESULTS.md, "Start-up" and "Idle").

- Output is compact (`{"a":1}`), keeps non-ASCII text as UTF-8, and writes values
  JSON has no type for with `str()`, as the log format promises.
- Infinite and NaN floats become `null` (JSON has no spelling for them).
- A lone surrogate (`"\\ud800"` read from a worker's JSON line) cannot be UTF-8; such a
  record is written with `\\u` escapes instead, which is still valid JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

_encode = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False
).encode
_encode_ascii = json.JSONEncoder(separators=(",", ":"), default=str, allow_nan=False).encode


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_decode = json.JSONDecoder(parse_constant=_reject_constant).decode


def _finite(value: object) -> object:
    """`value` with every non-finite float (nested in dicts, lists, tuples) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
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


def loads(data: bytes | str) -> object:
    """Parse JSON; raises ValueError (or RecursionError when nested too deep)."""
    return _decode(data.decode() if isinstance(data, bytes) else data)


def loads_object(data: bytes | str) -> dict[str, object] | None:
    """The JSON object in `data`, or None when it is not one (or not JSON at all)."""
    try:
        value = loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None

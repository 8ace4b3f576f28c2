"""The usual shape of an ecosystem YAML file, read without importing PyYAML.

Importing PyYAML costs the master about 30 ms before its first fork (its reader
compiles a Unicode-range regular expression, and it imports `re`, `enum`, `datetime`
and `base64`; bench/RESULTS.md, "Start-up"). Ecosystem files are small and plain, so
this reader takes a strict subset of YAML and returns `UNSURE` for anything it does
not read exactly as PyYAML's SafeLoader does; `runtime.config.load` then asks PyYAML, which
also words every error. The subset:

- block mappings and block sequences (a sequence under a key may sit at the key's
  indentation), `- key: value` items, comments, blank lines, spaces only;
- plain scalars on one line, resolved as YAML 1.1 does for null (`~`, `null`, empty),
  booleans (`true`/`yes`/`on` and their opposites, three spellings each) and decimal
  integers; any other plain scalar that one of PyYAML's resolvers could turn into a
  number, date or special value (`012`, `1.5`, `1:30`, `2026-01-01`, `.inf`, `<<`) is
  UNSURE, and the rest are strings (`200M`, `5s`, `app.py`, `${PORT:-3000}`);
- single-quoted scalars, double-quoted scalars without backslashes, `[]`, `{}`, and
  one-line flow sequences of such scalars (`args: [--port, "8000"]`).

Duplicate keys, anchors, tags, block scalars (`|`, `>`), multi-line scalars, flow
mappings, document markers and tabs are all UNSURE. tests/unit/test_yamlite.py checks
on generated and on mutated documents that every answer other than UNSURE equals
PyYAML's.
"""

from __future__ import annotations

UNSURE = object()  # "not mine": PyYAML must read this document

_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"})
_FALSE = frozenset({"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"})
_DIGITS = frozenset("0123456789")
# Every character a YAML 1.1 int, float or sexagesimal number can be spelled with.
_NUMBER_CHARS = frozenset("0123456789abcdefABCDEFxXoObB_+-.:eE")
_INDICATORS = frozenset("-?:,[]{}#&*!|>'\"%@`")


class _Unsure(Exception):
    """Raised anywhere below to give the document to PyYAML."""


def load(text: str) -> object:
    """The document's value, or UNSURE."""
    try:
        lines = _lines(text)
        if not lines:
            return None
        value, end = _block(lines, 0, lines[0][0])
        if end != len(lines) or lines[0][0] != 0:
            raise _Unsure
        return value
    except (_Unsure, RecursionError):
        return UNSURE


def _lines(text: str) -> list[tuple[int, str]]:
    """(indent, content) of every line that is not blank or a comment."""
    out = []
    for line in text.split("\n"):
        if not line.isprintable() or line.startswith(("---", "...", "%")):
            raise _Unsure  # tabs, \r, control characters, directives, document markers
        content = line.lstrip(" ")
        if content and not content.startswith("#"):
            out.append((len(line) - len(content), content.rstrip(" ")))
    return out


def _block(lines: list[tuple[int, str]], pos: int, indent: int) -> tuple[object, int]:
    if _is_item(lines[pos][1]):
        return _sequence(lines, pos, indent)
    return _mapping(lines, pos, indent, lines[pos][1])


def _is_item(content: str) -> bool:
    return content == "-" or content.startswith("- ")


def _sequence(lines: list[tuple[int, str]], pos: int, indent: int) -> tuple[list[object], int]:
    items: list[object] = []
    while pos < len(lines) and lines[pos][0] == indent and _is_item(lines[pos][1]):
        rest = lines[pos][1][1:]
        inner = indent + 1 + len(rest) - len(rest.lstrip(" "))
        rest = rest.lstrip(" ")
        if not rest:
            value, pos = _nested(lines, pos + 1, indent)
        elif _is_item(rest):
            raise _Unsure  # "- - x"
        elif _key_split(rest) is not None:
            value, pos = _mapping(lines, pos, inner, rest)
        else:
            value, pos = _inline(rest), pos + 1
        items.append(value)
    _end_of_block(lines, pos, indent)
    return items, pos


def _mapping(
    lines: list[tuple[int, str]], pos: int, indent: int, first: str
) -> tuple[dict[object, object], int]:
    """A mapping whose first entry is `first` (on line `pos`, perhaps after `- `)."""
    result: dict[object, object] = {}
    content = first
    while True:
        split = _key_split(content)
        if split is None:
            raise _Unsure
        key, rest = _plain(split[0]), split[1]
        if key in result or isinstance(key, list | dict):
            raise _Unsure  # duplicate keys: PyYAML keeps the last one silently
        if rest:
            result[key], pos = _inline(rest), pos + 1
        else:
            result[key], pos = _nested(lines, pos + 1, indent, compact=True)
        if pos >= len(lines) or lines[pos][0] != indent or _is_item(lines[pos][1]):
            break
        content = lines[pos][1]
    _end_of_block(lines, pos, indent)
    return result, pos


def _nested(
    lines: list[tuple[int, str]], pos: int, indent: int, *, compact: bool = False
) -> tuple[object, int]:
    """The block under `key:` or `-`: deeper lines, a sequence at the same indent
    (`compact`, under a key), or null."""
    if pos < len(lines):
        deeper, content = lines[pos]
        if deeper > indent:
            return _block(lines, pos, deeper)
        if compact and deeper == indent and _is_item(content):
            return _sequence(lines, pos, indent)
    return None, pos


def _end_of_block(lines: list[tuple[int, str]], pos: int, indent: int) -> None:
    """A block ends where a line is less indented (or the document ends)."""
    if pos < len(lines) and lines[pos][0] > indent:
        raise _Unsure  # a continuation line, or an indentation PyYAML may reject


def _key_split(content: str) -> tuple[str, str] | None:
    """`key: rest` as (key, rest without a comment), for a plain key; else None."""
    if content[0] in _INDICATORS:
        return None
    colon = content.find(": ")
    if colon < 0:
        if not content.endswith(":"):
            return None
        colon = len(content) - 1
    key = content[:colon]
    if " #" in key or key != key.rstrip(" "):
        return None
    rest = content[colon + 1 :].lstrip(" ")
    return key, "" if rest.startswith("#") else rest


def _inline(text: str) -> object:
    """A scalar or flow collection on the rest of a line (comments allowed after it)."""
    head = text[0]
    if head in "'\"":
        value, rest = _quoted(text)
        _comment_only(rest)
        return value
    if head == "[":
        return _flow_sequence(text)
    if head == "{":
        after = text[1:].lstrip(" ")
        if not after.startswith("}"):
            raise _Unsure  # flow mappings other than {}
        _comment_only(after[1:])
        return {}
    if head in _INDICATORS and not _dash_word(text):
        raise _Unsure  # anchors, aliases, tags, block scalars, `:x`, ...
    cut = text.find(" #")
    plain = (text if cut < 0 else text[:cut]).rstrip(" ")
    if ": " in plain or plain.endswith(":"):
        raise _Unsure  # PyYAML: "mapping values are not allowed here"
    return _plain(plain)


def _dash_word(text: str) -> bool:
    """`-x`, `--port`: a plain scalar may start with `-` when no space follows it."""
    return text[0] == "-" and len(text) > 1 and text[1] != " "


def _comment_only(rest: str) -> None:
    """What follows a closing quote or bracket: nothing, or spaces and a comment."""
    stripped = rest.lstrip(" ")
    if stripped and not (stripped.startswith("#") and stripped != rest):
        raise _Unsure


def _quoted(text: str) -> tuple[str, str]:
    """A quoted scalar at the start of `text`: (value, what follows the closing quote)."""
    quote = text[0]
    if quote == '"':
        end = text.find('"', 1)
        if end < 0 or "\\" in text[1:end]:
            raise _Unsure
        return text[1:end], text[end + 1 :]
    pieces = []
    i = 1
    while True:
        end = text.find("'", i)
        if end < 0:
            raise _Unsure
        pieces.append(text[i:end])
        if text[end + 1 : end + 2] != "'":
            return "'".join(pieces), text[end + 1 :]
        i = end + 2


def _flow_sequence(text: str) -> list[object]:
    """`[a, "b c", 3]` on one line: scalars only, no nesting, no trailing comma."""
    raw_items, close = _flow_split(text)
    _comment_only(text[close + 1 :])
    if len(raw_items) == 1 and not raw_items[0].strip(" "):
        return []
    items: list[object] = []
    for raw in raw_items:
        item = raw.strip(" ")
        if not item:
            raise _Unsure
        if item[0] in "'\"":
            value, rest = _quoted(item)
            if rest.strip(" "):
                raise _Unsure
            items.append(value)
        elif (item[0] in _INDICATORS and not _dash_word(item)) or any(c in item for c in ":#"):
            raise _Unsure
        else:
            items.append(_plain(item))
    return items


def _flow_split(text: str) -> tuple[list[str], int]:
    """The items of the flow sequence at text[0] (split at commas outside quotes) and
    where its `]` is; nesting is UNSURE."""
    items, start, i = [], 1, 1
    while i < len(text):
        c = text[i]
        if c in "'\"":
            _value, rest = _quoted(text[i:])
            i = len(text) - len(rest)
            continue
        if c in "[{":
            raise _Unsure
        if c in ",]":
            items.append(text[start:i])
            if c == "]":
                return items, i
            start = i + 1
        i += 1
    raise _Unsure


def _plain(text: str) -> object:
    """A plain scalar resolved as PyYAML's SafeLoader would, or _Unsure."""
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    digits = text[1:] if text.startswith("-") else text
    if digits and set(digits) <= _DIGITS and (digits == "0" or digits[0] != "0"):
        return int(text)
    if text[0] in _INDICATORS and text[0] != "-":
        raise _Unsure
    if text in ("=", "<<") or text.lower().lstrip("+-") in (".inf", ".nan"):
        raise _Unsure
    if text[0] in "0123456789+-." and set(text) <= _NUMBER_CHARS:
        raise _Unsure  # 012, 1.5, 1_000, 0x1F, 1:30, 2026-01-01, -.5, ...
    if len(text) >= 8 and text[:4].isdigit() and text[4] == "-":
        raise _Unsure  # a timestamp with a time part
    return text

"""`.env` files: `KEY=value` lines (`export`, quotes, comments), as docker and python-dotenv
read them (pure: the caller reads the file)."""

from __future__ import annotations

import re

from runtime.config.values import BadValue, got

_LINE = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)", re.ASCII)
_COMMENT = re.compile(r"\s+#")


def _value(raw: str) -> str | None:
    """The value of one line: quoted (`'...'` literal, `"..."` with escapes) or bare."""
    if raw[:1] in ("'", '"'):
        quote = raw[0]
        end = raw.find(quote, 1)
        while quote == '"' and end > 0 and raw[end - 1] == "\\":
            end = raw.find(quote, end + 1)
        if end < 0 or raw[end + 1 :].strip()[:1] not in ("", "#"):
            return None
        inner = raw[1:end]
        if quote == '"':
            inner = inner.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        return inner
    return _COMMENT.split(raw, maxsplit=1)[0].strip()


def parse_dotenv(text: str) -> dict[str, str]:
    """Every `KEY=value` line; blank lines and `#` comments skipped, anything else an error."""
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _LINE.fullmatch(stripped)
        value = _value(match.group(2)) if match else None
        if match is None or value is None:
            raise BadValue(f"line {number}: expected KEY=value, got {got(stripped)}")
        env[match.group(1)] = value
    return env

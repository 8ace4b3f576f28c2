"""`${VAR}` expansion in every string of an ecosystem document (pure: the caller passes env).

| form | value |
| --- | --- |
| `${VAR}` | the variable; unset gives `""` and the name is reported missing |
| `${VAR:-default}` | `default` when unset or empty |
| `${VAR-default}` | `default` when unset |
| `$${` | a literal `${` |

`$VAR` without braces is left alone (a shell in `script` expands it at run time).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from runtime.config.values import BadValue

MAX_DEPTH = 64
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}", re.ASCII)


def expand_text(text: str, environ: Mapping[str, str], missing: set[str]) -> str:
    """One string with every `${...}` replaced; unset names without a default go to `missing`."""

    def one(match: re.Match[str]) -> str:
        name, op, default = match.groups()
        if name is None:
            return "${"
        current = environ.get(name)
        if (op == ":-" and not current) or (op == "-" and current is None):
            return str(default)
        if current is None:
            missing.add(name)
        return current or ""

    return _VAR.sub(one, text)


def expand_vars(
    value: object, environ: Mapping[str, str], missing: set[str], depth: int = 0
) -> object:
    """`value` with every string expanded (keys are left as they are)."""
    if depth > MAX_DEPTH:
        raise BadValue(f"expected at most {MAX_DEPTH} levels of nesting")
    if isinstance(value, str) and "${" in value:
        return expand_text(value, environ, missing)
    if isinstance(value, dict):
        return {k: expand_vars(v, environ, missing, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_vars(v, environ, missing, depth + 1) for v in value]
    return value

"""What one ecosystem value means: parsers from a raw value to a typed one (pure).

Each parser takes what the file gave (a string, number, list, mapping...) and returns
the typed value or raises `BadValue` whose message is `expected ..., got ...`; the
caller adds where (file, app, key). Numbers may be given as text, since `${VAR}`
expands to text.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import signal
from collections.abc import Mapping
from typing import Literal

ExecMode = Literal["fork", "cluster"]
SocketSharing = Literal["shared", "reuseport"]

MAX_DURATION_MS = 2**31 - 1  # about 24 days: what a timer can hold everywhere
MAX_INSTANCES = 4096
# Linux's MAX_ARG_STRLEN: one argument (or one shell command line) longer than this can
# never be exec'd (E2BIG). Refusing it up front also keeps `shlex`, whose time grows
# with the square of a word's length, away from megabyte strings.
MAX_ARG_BYTES = 131_072
_BYTE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_DURATION_UNITS = {"": 1, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
_NUMBER_AND_UNIT = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)", re.ASCII)
_INTEGER = re.compile(r"-?[0-9]{1,18}", re.ASCII)
_VAR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class BadValue(ValueError):
    """A value of the wrong shape; the message is `expected ..., got ...`, the caller adds where."""


def _text_ok(value: str) -> bool:
    """Whether `value` is Unicode text a process can be given (no lone surrogate)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8(value: str) -> str:
    """`value`, or BadValue when a surrogate (from a JSON `\\ud800` escape or undecodable
    bytes) makes it something no argv, environment or terminal can carry."""
    if not _text_ok(value):
        raise BadValue(f"expected UTF-8 text, got {got(value)}")
    return value


def got(value: object) -> str:
    """`repr(value)`, cut to 60 characters for an error line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def is_var_name(text: str) -> bool:
    """An environment variable name, `[A-Za-z_][A-Za-z0-9_]*`."""
    return _VAR_NAME.fullmatch(text) is not None


def _integer_text(value: object) -> object:
    """A string of ASCII digits (optionally signed) as an int; anything else unchanged."""
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        return int(value)
    return value


def _number(value: object) -> float | None:
    """A finite, non-negative int or float; None otherwise (bools too)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if value >= 0 and math.isfinite(value) else None


def _number_and_unit(value: object) -> tuple[float, str] | None:
    """`12`, `1.5`, `512M`, `5 s`: the number and its lower-case unit ("" when bare)."""
    if isinstance(value, str):
        match = _NUMBER_AND_UNIT.fullmatch(value.strip())
        return (float(match.group(1)), match.group(2).lower()) if match else None
    number = _number(value)
    return None if number is None else (number, "")


def parse_bytes(value: object) -> int:
    """A memory size: a bare number is bytes, `K`/`M`/`G` (or `KB`...) multiply by 1024."""
    parts = _number_and_unit(value)
    unit = parts[1].removesuffix("b") if parts else ""
    if parts is None or unit not in _BYTE_UNITS or parts[0] * _BYTE_UNITS[unit] < 1:
        raise BadValue(f"expected a size such as 512M, 1G or a number of bytes, got {got(value)}")
    return int(parts[0] * _BYTE_UNITS[unit])


def parse_duration_ms(value: object) -> int:
    """A duration: a bare number is milliseconds, or `500ms`, `5s`, `2m`, `1h`."""
    parts = _number_and_unit(value)
    if parts is None or parts[1] not in _DURATION_UNITS:
        expected = "expected a duration such as 500ms, 5s, 2m or milliseconds"
        raise BadValue(f"{expected}, got {got(value)}")
    ms = parts[0] * _DURATION_UNITS[parts[1]]
    if ms > MAX_DURATION_MS:
        raise BadValue(f"expected at most {MAX_DURATION_MS} ms, got {got(value)}")
    return round(ms)


def parse_int(value: object, *, minimum: int = 0) -> int:
    """An integer (numeric strings too) of at least `minimum`."""
    number = _integer_text(value)
    if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
        raise BadValue(f"expected an integer of at least {minimum}, got {got(value)}")
    return number


def parse_instances(value: object, cpus: int) -> int:
    """`N`, `max` or 0 (one per cpu), -1 (cpus minus one, at least 1), as pm2 counts them."""
    if isinstance(value, str) and value.strip().lower() == "max":
        return cpus
    number = _integer_text(value)
    if isinstance(number, bool) or not isinstance(number, int):
        raise BadValue(f"expected an integer, 'max' or -1, got {got(value)}")
    count = cpus if number == 0 else max(1, cpus + number) if number < 0 else number
    if count > MAX_INSTANCES:
        raise BadValue(f"expected at most {MAX_INSTANCES} instances, got {got(value)}")
    return count


def wants_cpu_count(instances: object) -> bool:
    """Whether an `instances` value counts CPUs (`max`, 0, -N, a range such as `2-max` or
    `{min: 1, max: max}` with either end counting them): only then are they read."""
    if isinstance(instances, Mapping):
        return any(wants_cpu_count(end) for end in instances.values())
    number = _integer_text(instances)
    if isinstance(number, int) and not isinstance(number, bool):
        return number <= 0
    return isinstance(number, str)


def parse_bool(value: object) -> bool:
    """A boolean; the strings true/false/yes/no/on/off/1/0 too."""
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise BadValue(f"expected true or false, got {got(value)}")


def is_bool_text(value: object) -> bool:
    """Whether `value` is a string `parse_bool` reads."""
    return isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE


def parse_text(value: object) -> str:
    """A non-empty string; numbers are accepted and written as text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise BadValue(f"expected a non-empty string, got {got(value)}")
    return _utf8(value)


def arg_bytes(text: str) -> int:
    """How many bytes `text` takes as an exec argument (a lone surrogate as its 3 bytes)."""
    return len(text.encode("utf-8", errors="surrogatepass"))


def parse_words(value: object) -> tuple[str, ...]:
    """A list of arguments, or one string split the way a shell would."""
    if isinstance(value, str):
        if arg_bytes(value) > MAX_ARG_BYTES:
            raise BadValue(f"expected at most {MAX_ARG_BYTES} bytes, got {arg_bytes(value)}")
        try:
            return tuple(shlex.split(_utf8(value)))
        except ValueError as exc:
            if isinstance(exc, BadValue):
                raise
            raise BadValue(f"expected shell words, got {got(value)} ({exc})") from None
    if isinstance(value, list | tuple):
        if any(isinstance(w, bool) or not isinstance(w, str | int | float) for w in value):
            raise BadValue(f"expected a list of strings, got {got(value)}")
        return tuple(_utf8(str(word)) for word in value)
    raise BadValue(f"expected a list of strings or a string, got {got(value)}")


def parse_texts(value: object) -> tuple[str, ...]:
    """One string or a list of non-empty strings."""
    items = value if isinstance(value, list | tuple) else [value]
    try:
        return tuple(parse_text(item) for item in items)
    except BadValue as exc:
        if str(exc).startswith("expected UTF-8"):
            raise
        raise BadValue(f"expected a string or a list of strings, got {got(value)}") from None


def parse_exec_mode(value: object) -> ExecMode:
    """`fork` or `cluster` (pm2's `fork_mode` / `cluster_mode` too)."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text in ("fork", "fork_mode"):
        return "fork"
    if text in ("cluster", "cluster_mode"):
        return "cluster"
    raise BadValue(f"expected 'fork' or 'cluster', got {got(value)}")


def parse_socket_sharing(value: object) -> SocketSharing:
    """`shared` (one socket for every worker) or `reuseport` (one per slot)."""
    text = value.strip().lower() if isinstance(value, str) else None
    if text == "shared":
        return "shared"
    if text == "reuseport":
        return "reuseport"
    raise BadValue(f"expected 'shared' or 'reuseport', got {got(value)}")


def parse_exit_codes(value: object) -> frozenset[int]:
    """One exit code or a list of them, each 0..255."""
    items = value if isinstance(value, list | tuple) else [value]
    try:
        codes = frozenset(parse_int(item) for item in items)
    except BadValue:
        codes = frozenset({256})
    if any(code > 255 for code in codes):
        raise BadValue(f"expected an exit code 0..255 or a list of them, got {got(value)}")
    return codes


def parse_var_name(value: object) -> str:
    """An environment variable name."""
    if not isinstance(value, str) or not is_var_name(value):
        raise BadValue(f"expected an environment variable name, got {got(value)}")
    return value


def parse_health(value: object) -> str:
    """An HTTP path, starting with `/`."""
    if not isinstance(value, str) or not value.startswith("/") or any(c.isspace() for c in value):
        raise BadValue(f"expected an HTTP path starting with '/', got {got(value)}")
    return _utf8(value)


def parse_cron(value: object) -> str | None:
    """A cron expression kept as text (validated by croniter); 0 disables, as in pm2."""
    if value in (0, "0") and not isinstance(value, bool):
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadValue(f"expected a cron expression such as '0 3 * * *', got {got(value)}")
    from runtime.config.cron import validate_cron  # croniter only for apps that use cron

    problem = validate_cron(value.strip())
    if problem is not None:
        raise BadValue(problem)
    return value.strip()


def parse_signal(value: object) -> int:
    """A signal by name (`SIGINT`, `INT`, `sigint`) or number, as `kill -l` lists them."""
    number = _integer_text(value)
    if isinstance(number, str):
        name = number.strip().upper()
        number = getattr(signal.Signals, name if name.startswith("SIG") else f"SIG{name}", None)
    valid = {int(s) for s in signal.Signals}
    if isinstance(number, bool) or not isinstance(number, int) or int(number) not in valid:
        raise BadValue(f"expected a signal name such as SIGINT or SIGTERM, got {got(value)}")
    return int(number)


def parse_filter_env(value: object) -> tuple[str, ...] | bool:
    """pm2's `filter_env`: true (leave out every master variable), or name parts to leave out."""
    if isinstance(value, bool):
        return value or ()
    try:
        return parse_texts(value)
    except BadValue:
        raise BadValue(f"expected true or a list of name parts, got {got(value)}") from None


def parse_user(value: object) -> str:
    """A user or group, by name or number (looked up when the app is resolved)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and value.strip() and value.strip().isprintable():
        return value.strip()
    raise BadValue(f"expected a user name or id, got {got(value)}")


def parse_port(value: object) -> int:
    """A TCP port number, 1..65535."""
    number = _integer_text(value)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
        raise BadValue(f"expected a port 1..65535, got {got(value)}")
    return number


def env_value(value: object) -> str:
    """How pm2 turns an env value into text: scalars as written, objects as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


def parse_env(value: object) -> dict[str, str]:
    """A mapping of variable names to values; every value becomes a string."""
    if not isinstance(value, Mapping):
        raise BadValue(f"expected a mapping of variables, got {got(value)}")
    env: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise BadValue(f"expected variable names without '=', got {got(key)}")
        text = env_value(item)
        if "\0" in text:
            raise BadValue(f"expected a value without NUL bytes for {key}, got {got(item)}")
        env[_utf8(key)] = _utf8(text)
    return env

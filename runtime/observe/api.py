"""`POST /api/apps/<name>/<verb>`: the dashboard's buttons, as decisions on plain data.

The verbs are the control socket's (`restart`, `reload`, `stop`, `start`, `scale` with
`?n=+1`, `?n=-1` or `?n=3`), run by the same handler (`runtime.control.handler`, handed
in by the supervisor as an `Act`), so a button does exactly what the command line does.

Who may ask: only POST changes anything (GET and HEAD get 405, `Allow: POST`); with a
token, only a request carrying `Authorization: Bearer <token>` (not `?token=`, which
would sit in the URL); no cookies are read or set. A request from a page of another
origin is refused (403): a browser always sends `Origin` with a POST, and it must be
the dashboard's own (`http://` plus the `Host` it was reached at). Without a token on a
loopback address, that `Host` must also be a loopback name, so a site whose name was
made to resolve to 127.0.0.1 (DNS rebinding) cannot pass as the dashboard.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from runtime.observe.webspec import is_loopback
from runtime.policy.scale import parse_scale

PREFIX = "/api/"
APPS_PREFIX = "/api/apps/"
VERBS = ("restart", "reload", "stop", "start", "scale")


class Act(Protocol):
    """Runs one control verb on one target; a refusal is `{"ok": false, "error": ...}`."""

    async def __call__(self, cmd: str, target: str, args: dict[str, Any]) -> dict[str, Any]: ...


class ApiError(Exception):
    """A refused API request: its HTTP status and one-line error."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Call:
    """One parsed request: which verb on which app, with its arguments."""

    app: str
    verb: str
    args: dict[str, Any]


def query_value(raw_query: str, key: str) -> str | None:
    """The first `key=` value, percent-decoded with a `+` kept as `+` (so `?n=+1` works)."""
    for part in raw_query.split("&"):
        name, _, value = part.partition("=")
        if unquote(name) == key:
            return unquote(value)
    return None


def parse_call(path: str, raw_query: str, apps: Container[str]) -> Call:
    """`/api/apps/<name>/<verb>` into a Call; unknown paths, apps and verbs are 404, a
    bad `n` 400."""
    if not path.startswith(APPS_PREFIX):
        raise ApiError(404, "not found")
    parts = path[len(APPS_PREFIX) :].split("/")
    if len(parts) != 2 or not parts[0]:
        raise ApiError(404, "not found: expected /api/apps/<name>/<verb>")
    name, verb = unquote(parts[0]), unquote(parts[1])
    if verb not in VERBS:
        raise ApiError(404, f"unknown verb {verb[:40]!r} (verbs: {', '.join(VERBS)})")
    if name not in apps:
        raise ApiError(404, f"unknown app {name[:100]!r}")
    if verb != "scale":
        return Call(name, verb, {})
    n = query_value(raw_query, "n")
    if n is None:
        raise ApiError(400, "scale needs ?n=N, ?n=+N or ?n=-N")
    try:
        parse_scale(n)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return Call(name, verb, {"n": n})


def host_name(host_header: str) -> str:
    """The name part of a Host header (`[::1]:9615` -> `::1`, `localhost:80` -> `localhost`)."""
    host = host_header.strip()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def check_origin(headers: dict[str, str], *, token_set: bool, bound_host: str) -> None:
    """Refuse (403) a cross-origin request, or a rebound name when nothing else guards."""
    host = headers.get("host", "")
    origin = headers.get("origin")
    if origin is not None:
        url = urlsplit(origin)
        if url.scheme != "http" or not host or url.netloc.lower() != host.lower():
            raise ApiError(403, "forbidden: the request comes from another origin")
    if not token_set and is_loopback(bound_host) and not is_loopback(host_name(host)):
        raise ApiError(403, f"forbidden: Host {host[:100]!r} is not this loopback dashboard")


def reply_body(call: Call, reply: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The HTTP status and JSON body for what the control handler answered."""
    if not reply.get("ok"):
        return 409, {"ok": False, "app": call.app, "verb": call.verb, "error": reply.get("error")}
    rows = reply.get("result")
    processes = [r for r in rows if r.get("name") == call.app] if isinstance(rows, list) else []
    return 200, {"ok": True, "app": call.app, "verb": call.verb, "processes": processes}

"""The control socket's wire format and where the socket lives.

Transport: a Unix stream socket, mode 0600, in a 0700 directory; the master checks
the peer's uid with SO_PEERCRED and refuses any uid but its own (and root's).

Framing: one JSON object per line, UTF-8, in both directions, under 1 MiB a line. A
request line must arrive within 5 s of connecting (or of the previous reply), or the
master closes the connection.

Request:  {"v": 1, "cmd": "<verb>", "target": "<name|id|all>" | null, "args": {...}}
Reply:    {"ok": true, "result": <any>}
          {"ok": false, "error": "<one line>"}
`logs` sends its backlog (`args.lines`, 15 by default, at most 10,000) as one
{"log": {record}} line per worker line, so no reply nears the 1 MiB line limit (a
message over 64 Ki characters is cut and its record marked "cut": true), then
{"ok": true, "result": []}; with `"follow": true` one {"log": {record}} line follows
per new worker line until the client closes the connection.

Verbs: ping, list, show, logs, stop, start, restart, reload, delete, scale.
Targets: an app name, a numeric process id (as `list` shows), or `all`.

Where: `--control PATH` or `$RUNTIME_CONTROL`, else one socket per ecosystem under
`$XDG_RUNTIME_DIR/runtime/`, `/run/runtime/` for root (when /run is writable: other
users cannot create it first) or `/tmp/runtime-<uid>/`, named after the ecosystem
file and a hash of its absolute path, so two projects never collide and a client in
the same container finds the only one there without configuration.

Trust: the directory must be a directory (a symlink only if ours or root's), owned by
the process's uid or root, and not writable by other users (unless it is a sticky
directory of root's, as /tmp). The master refuses to bind elsewhere; a client refuses
to talk to a socket in another directory, or to a socket file owned by another uid
than its own or root's: another user who got there first could otherwise pose as the
runtime.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import zlib
from collections.abc import Mapping
from typing import Any

PROTOCOL_VERSION = 1
SOCKET_MODE = 0o600
DIR_MODE = 0o700
SOCKET_SUFFIX = ".sock"
ROOT_RUN_DIR = "/run"  # root's sockets go under /run/runtime when it is writable
MAX_LINE = 1 << 20

VERBS = ("ping", "list", "show", "logs", "stop", "start", "restart", "reload", "delete", "scale")
CLIENT_VERBS = (*VERBS, "monit")  # monit is the client's own: list, show, logs and actions
ALIASES = {"ls": "list", "l": "list", "status": "list", "ps": "list"}


class ControlError(Exception):
    """A failed control request; the message is the one line the client prints."""


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as a line: compact JSON, UTF-8 (unpaired surrogates escaped)."""
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ControlError(f"malformed message: {exc}") from None
    if not isinstance(value, dict):
        raise ControlError("malformed message: not an object")
    return value


def request(cmd: str, target: str | None = None, **args: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "cmd": cmd, "target": target, "args": args}


def control_dir(environ: Mapping[str, str] | None = None) -> str:
    """The directory that holds every runtime's control socket for this user."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "runtime")
    uid = os.geteuid()
    if uid == 0 and os.path.isdir(ROOT_RUN_DIR) and os.access(ROOT_RUN_DIR, os.W_OK):
        return os.path.join(ROOT_RUN_DIR, "runtime")
    return f"/tmp/runtime-{uid}"


def _trusted_uid(uid: int) -> bool:
    return uid in (os.geteuid(), 0)


def untrusted_dir(directory: str) -> str | None:
    """Why another user could plant or replace a socket in `directory`, or None (also when
    it cannot be looked at). The reason reads after the directory's name."""
    try:
        link = os.lstat(directory)
        st = os.stat(directory)
    except OSError:
        return None  # missing or out of reach: binding or connecting says why
    if stat.S_ISLNK(link.st_mode) and not _trusted_uid(link.st_uid):
        return f"is a symlink owned by uid {link.st_uid}"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if not _trusted_uid(st.st_uid):
        return f"is owned by uid {st.st_uid}, not by uid {os.geteuid()} or root"
    shared_tmp = st.st_mode & stat.S_ISVTX and st.st_uid == 0  # /tmp: ours stay ours
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not shared_tmp:
        return f"is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def untrusted_socket(path: str) -> str | None:
    """Why the socket at `path` may not be the runtime's (its directory or owner), or None."""
    directory = os.path.dirname(os.path.realpath(path)) or "."
    reason = untrusted_dir(directory)
    if reason is not None:
        return f"its directory {directory} {reason}"
    try:
        owner = os.stat(path).st_uid
    except OSError:
        return None  # nothing there: connecting says so
    if not _trusted_uid(owner):
        return f"it is owned by uid {owner}, not by uid {os.geteuid()} or root"
    return None


def socket_name(source: str) -> str:
    """`<stem>-<hash8>.sock` for an ecosystem file (or a direct-form command line)."""
    absolute = os.path.abspath(source)
    stem = _safe_stem(os.path.basename(absolute))[:40] or "runtime"
    return f"{stem}-{zlib.crc32(os.fsencode(absolute)):08x}{SOCKET_SUFFIX}"


def _safe_stem(name: str) -> str:
    """`name` with each run of characters outside `[A-Za-z0-9._-]` as one `_`."""
    out: list[str] = []
    for c in name:
        if c.isascii() and (c.isalnum() or c in "._-"):
            out.append(c)
        elif not out or out[-1] != "\0":
            out.append("\0")
    return "".join(out).replace("\0", "_")


def default_socket_path(source: str, environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    explicit = env.get("RUNTIME_CONTROL")
    if explicit:
        return explicit
    return os.path.join(control_dir(env), socket_name(source))


def socket_is_live(path: str) -> bool:
    """Whether a runtime answers on this control socket (a refused connect means stale)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True

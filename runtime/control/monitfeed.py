"""`monit`'s side of the control socket: poll `list` and `show`, follow `logs`, send actions.

Polls are short blocking requests (REQUEST_TIMEOUT_S, so a stuck master cannot freeze the
screen); the log stream and an action in flight (a restart can take `kill_timeout`, a
reload a readiness wait) are non-blocking sockets the loop reads when bytes are there.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.control.connection import ClientError, Connection
from runtime.control.monitstate import Action
from runtime.control.protocol import MAX_LINE, request, socket_is_live

REQUEST_TIMEOUT_S = 2.0
BACKLOG_LINES = 100


class MasterGone(ClientError):
    """The runtime's control socket no longer answers: monit ends with this line, exit 1."""

    def __init__(self, path: str, reason: ClientError) -> None:
        self.reason = reason
        super().__init__(f"the runtime is gone: nothing answers on {path} any more")


def ask(path: str, cmd: str, target: str | None = None) -> Any:
    """One request with a short timeout; a master that is gone is MasterGone."""
    try:
        reply = _first_reply(path, request(cmd, target))
    except ClientError as exc:
        raise _gone_or(path, exc) from None
    if not reply.get("ok"):
        raise ClientError(str(reply.get("error", f"{cmd} failed")))
    return reply.get("result")


def _first_reply(path: str, message: dict[str, Any]) -> dict[str, Any]:
    conn = Connection(path, timeout_s=REQUEST_TIMEOUT_S)
    try:
        conn.send(message)
        for reply in conn.replies():
            return reply
        raise ClientError("the runtime closed the connection")
    finally:
        conn.close()


def _gone_or(path: str, exc: ClientError) -> ClientError:
    """MasterGone when nothing listens on `path` any more, else `exc` (a busy master)."""
    if socket_is_live(path):
        return exc
    return MasterGone(path, exc)


def fetch_rows(path: str) -> list[dict[str, Any]]:
    result = ask(path, "list")
    return result if isinstance(result, list) else []


def fetch_info(path: str, app: str) -> dict[str, Any] | None:
    """`show APP` (secrets masked), or None if it fails (the app was just deleted)."""
    try:
        result = ask(path, "show", app)
    except MasterGone:
        raise
    except ClientError:
        return None
    return result if isinstance(result, dict) else None


class _Stream:
    """One request on a non-blocking connection: its reply lines as they arrive."""

    def __init__(self, path: str, message: dict[str, Any]) -> None:
        self.closed = False
        self._buf = b""
        self._conn = Connection(path, timeout_s=REQUEST_TIMEOUT_S)
        self._conn.send(message)
        self._conn.sock.setblocking(False)

    def replies(self) -> list[dict[str, Any]]:
        """Every complete reply received so far (never blocks)."""
        while not self.closed:
            try:
                chunk = self._conn.sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
            self._buf += chunk
            if len(self._buf) > MAX_LINE:
                self._buf = b""
        *lines, self._buf = self._buf.split(b"\n")
        out = []
        for line in lines:
            try:
                reply = json.loads(line)
            except (ValueError, RecursionError):  # not JSON, or nested past the limit
                continue
            if isinstance(reply, dict):
                out.append(reply)
        return out

    def close(self) -> None:
        self._conn.close()


class LogFollower(_Stream):
    """`logs ID --follow`: one process's backlog, then its live lines."""

    def __init__(self, path: str, process_id: int) -> None:
        self.process_id = process_id
        super().__init__(path, request("logs", str(process_id), lines=BACKLOG_LINES, follow=True))

    def read(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for reply in self.replies():
            if isinstance(reply.get("log"), dict):
                records.append(reply["log"])
        return records


class PendingCall(_Stream):
    """An action sent to the master; `result()` is its answer once it came."""

    def __init__(self, path: str, action: Action) -> None:
        self.action = action
        args = {"n": action.n} if action.n is not None else {}
        super().__init__(path, request(action.verb, action.app, **args))

    def result(self) -> tuple[bool, str | None] | None:
        """None while waiting, then (True, None) or (False, the master's error)."""
        for reply in self.replies():
            if reply.get("ok"):
                return True, None
            return False, str(reply.get("error", "failed"))
        if self.closed:
            return False, "the runtime closed the connection without answering"
        return None

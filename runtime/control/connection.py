"""The client's side of the control socket: find the running master, send, read replies."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

from runtime.control.protocol import (
    MAX_LINE,
    SOCKET_SUFFIX,
    control_dir,
    default_socket_path,
    request,
    socket_is_live,
    untrusted_dir,
    untrusted_socket,
)
from runtime.errors import RuntimeUserError

TIMEOUT_S = 60.0


class ClientError(RuntimeUserError):
    """A control request that failed: one line, exit 1."""


def find_socket(explicit: str | None, ecosystem: str | None) -> str:
    """`--control`, `$RUNTIME_CONTROL`, the ecosystem's own socket, or the only live one."""
    if explicit:
        return explicit
    if os.environ.get("RUNTIME_CONTROL"):
        return os.environ["RUNTIME_CONTROL"]
    if ecosystem:
        return default_socket_path(ecosystem)
    directory = control_dir()
    reason = untrusted_dir(directory)
    if reason is not None:
        raise ClientError(f"refusing {directory}: it {reason} (pass --control PATH)")
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SOCKET_SUFFIX))
    except OSError:
        names = []
    paths = [os.path.join(directory, n) for n in names]
    live = [p for p in paths if untrusted_socket(p) is None and socket_is_live(p)]
    if len(live) == 1:
        return live[0]
    if not live:
        raise ClientError(f"no running runtime found in {directory} (pass --control PATH)")
    shown = ", ".join(os.path.basename(p) for p in live)
    raise ClientError(
        f"several runtimes are running ({shown}): pass --control PATH or --ecosystem FILE"
    )


class Connection:
    """One request/response exchange (or a stream of replies) over the control socket."""

    def __init__(self, path: str, timeout_s: float | None = TIMEOUT_S) -> None:
        reason = untrusted_socket(path)
        if reason is not None:
            raise ClientError(f"refusing to talk to {path}: {reason}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        try:
            self.sock.connect(path)
        except FileNotFoundError:
            raise ClientError(f"no runtime is listening on {path}") from None
        except PermissionError:
            raise ClientError(f"permission denied on {path}: run as the runtime's user") from None
        except OSError as exc:
            raise ClientError(
                f"cannot reach the runtime at {path}: {exc.strerror or exc}"
            ) from None
        self._file = self.sock.makefile("rb")
        self._timeout_s = timeout_s
        self._send_error: OSError | None = None

    def send(self, message: dict[str, Any]) -> None:
        """Send one request; if the runtime closed the connection, its reply may still be
        there to read, so a broken pipe is only reported when there is none."""
        try:
            self.sock.sendall(json.dumps(message).encode() + b"\n")
        except TimeoutError:
            raise ClientError(
                f"the runtime does not read requests ({self._timeout_s:g} s)"
            ) from None
        except OSError as exc:
            self._send_error = exc

    def _readline(self) -> bytes:
        """One raw reply line; a lost connection is a ClientError, never a BrokenPipeError
        (which the CLI reads as its own stdout closing, exit 0)."""
        try:
            line = self._file.readline(MAX_LINE + 1)
        except TimeoutError:
            raise ClientError(f"no answer from the runtime within {self._timeout_s:g} s") from None
        except OSError as exc:
            raise ClientError(
                f"lost the connection to the runtime: {exc.strerror or exc}"
            ) from None
        if not line and self._send_error is not None:
            reason = self._send_error.strerror or self._send_error
            raise ClientError(f"the runtime closed the connection before the request ({reason})")
        return line

    def replies(self) -> Iterator[dict[str, Any]]:
        """Each reply line as a dict; a line over MAX_LINE or not a JSON object is a
        ClientError, never a traceback."""
        while line := self._readline():
            if not line.endswith(b"\n"):
                if len(line) > MAX_LINE:
                    raise ClientError(f"a reply from the runtime is over {MAX_LINE} bytes")
                raise ClientError("the runtime closed the connection in the middle of a reply")
            try:
                reply = json.loads(line)
            except (ValueError, RecursionError):
                reply = None
            if not isinstance(reply, dict):
                raise ClientError("malformed reply from the runtime")
            yield reply

    def close(self) -> None:
        self._file.close()
        self.sock.close()


def call(path: str, cmd: str, target: str | None = None, **args: Any) -> Any:
    """Send one request; return its result or raise ClientError with the master's message."""
    conn = Connection(path)
    try:
        conn.send(request(cmd, target, **args))
        for reply in conn.replies():
            if not reply.get("ok"):
                raise ClientError(str(reply.get("error", "request failed")))
            return reply.get("result")
        raise ClientError("the runtime closed the connection without answering")
    except TimeoutError:
        raise ClientError(f"no answer from the runtime within {TIMEOUT_S:.0f} s") from None
    finally:
        conn.close()

"""The sd_notify receiver: workers send `READY=1` (and friends) to `$NOTIFY_SOCKET`.

One AF_UNIX SOCK_DGRAM socket with SO_PASSCRED, read from the master's event loop with
`add_reader` + non-blocking `recvmsg` (no threads). The sender's pid comes from the
kernel's SCM_CREDENTIALS, never from the message, so a worker cannot speak for another;
the supervisor routes by that pid (an unknown pid may be a worker's descendant: mapping
it is the supervisor's call). Payloads are newline-separated `KEY=VALUE` lines
(`READY=1`, `STATUS=...`, `STOPPING=1`, `MAINPID=...`, any other key is passed through:
`X_RUNTIME_LOOP=<json>` and `X_RUNTIME_METRICS=<json>` carry a worker's metrics, decoded
and bounded by runtime.observe.appmetrics; systemd ignores unknown variables);
malformed datagrams and lines are dropped, never raised. The kernel queues at most
`net.unix.max_dgram_qlen` (often 10) datagrams: a blocking sender waits for the master
to drain them, a non-blocking one gets EAGAIN, so the reader drains all it can per wakeup.

Why a filesystem path rather than the Linux abstract namespace (`@name`): the path
sits in the master's private 0700 runtime directory, so only our uid (and root) can
send to it, while an abstract name is open to every process in the network namespace,
and collides across containers that share the host's (`--network host`). Every
sd_notify client handles `/path`; a few naive ones mishandle `@`.
"""

from __future__ import annotations

import array
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from runtime.proc.sockets import UNIX_PATH_MAX_BYTES

if TYPE_CHECKING:  # asyncio is imported by start(): bind_notify runs before the event loop
    from asyncio import AbstractEventLoop

NOTIFY_SOCKET_NAME = "notify.sock"
MAX_DATAGRAM_BYTES = 4096  # systemd reads notifications into a buffer of this size
MAX_DATAGRAMS_PER_WAKEUP = 1024  # drain the queue but let other callbacks run under a flood

_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_FD_BYTES = array.array("i").itemsize
_ANCILLARY_BYTES = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(16 * _FD_BYTES)


OnMessage = Callable[[int, dict[str, str]], None]


def notify_socket_path(runtime_dir: str) -> str:
    """The NOTIFY_SOCKET path inside the master's private runtime directory."""
    path = os.path.join(runtime_dir, NOTIFY_SOCKET_NAME)
    if len(os.fsencode(path)) > UNIX_PATH_MAX_BYTES:
        raise ValueError(f"notify socket path longer than {UNIX_PATH_MAX_BYTES} bytes: {path}")
    return path


def parse_notify(data: bytes) -> dict[str, str]:
    """`KEY=VALUE` lines to a dict (last one wins); bad lines are skipped, bad UTF-8 is {}."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n"):
        key, sep, value = line.partition("=")
        if sep and key and "\0" not in line and key.isascii() and key.isprintable():
            fields[key] = value
    return fields


def _credentials_pid(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    """The sender pid from SCM_CREDENTIALS; closes any fds smuggled in with SCM_RIGHTS."""
    pid = None
    for level, kind, data in ancdata:
        if level != socket.SOL_SOCKET:
            continue
        if kind == socket.SCM_CREDENTIALS and len(data) >= _UCRED.size:
            pid = _UCRED.unpack_from(data)[0]
        elif kind == socket.SCM_RIGHTS:  # FDSTORE=1 is not supported: never leak the fds
            fds = array.array("i")
            fds.frombytes(data[: len(data) - len(data) % _FD_BYTES])
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
    return pid


def bind_notify(path: str) -> socket.socket:
    """The sd_notify datagram socket, credentials on so senders are known by pid.

    Needs no event loop: the master binds it before forking its first workers.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # our private directory: a leftover is a dead master's
        sock.bind(path)
    except BaseException:
        sock.close()
        raise
    return sock


def allow_other_users(path: str) -> None:
    """Let workers that run as another user (`uid`) reach the socket: the socket 0666, its
    directory searchable (not listable). Senders stay known by their kernel-given pid."""
    os.chmod(path, 0o666)
    directory = os.path.dirname(path)
    os.chmod(directory, os.stat(directory).st_mode & 0o777 | 0o111)


class NotifyServer:
    """Receives sd_notify datagrams and calls `on_message(sender_pid, fields)`."""

    def __init__(self, path: str, on_message: OnMessage) -> None:
        self.path = path  # what workers get as NOTIFY_SOCKET
        self._on_message = on_message
        self._sock: socket.socket | None = None
        self._loop: AbstractEventLoop | None = None

    async def start(self, sock: socket.socket | None = None) -> None:
        """Read `sock` (bound before the loop, `runtime.boot.early`) or bind the path now."""
        import asyncio

        loop = asyncio.get_running_loop()
        if sock is None:
            sock = bind_notify(self.path)
        try:
            loop.add_reader(sock.fileno(), self._drain)
        except BaseException:
            sock.close()
            raise
        self._sock, self._loop = sock, loop

    def _drain(self) -> None:
        """Read every queued datagram (bounded per wakeup) and hand on the valid ones."""
        sock = self._sock
        if sock is None:
            return
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            try:
                data, ancdata, flags, _ = sock.recvmsg(MAX_DATAGRAM_BYTES, _ANCILLARY_BYTES)
            except InterruptedError:
                continue
            except OSError:  # BlockingIOError: drained; anything else: try next wakeup
                return
            pid = _credentials_pid(ancdata)
            if pid is None or pid <= 0 or flags & socket.MSG_TRUNC:
                continue
            fields = parse_notify(data)
            if fields:
                self._on_message(pid, fields)

    def close(self) -> None:
        """Stop reading, close the socket and remove its file; safe to call twice."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __repr__(self) -> str:
        return f"<NotifyServer unix:{self.path}>"

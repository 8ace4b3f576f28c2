"""The IPC channel node workers get, as under pm2: `process.send('ready')` and `'shutdown'`.

Node opens an IPC channel on the fd named by `NODE_CHANNEL_FD` at start; with
`NODE_CHANNEL_SERIALIZATION_MODE=json` each message is one JSON value and a newline. The
master keeps the other end of a socketpair and reads it on its loop (no thread):

- `'ready'` (what `process.send('ready')` sends) marks the worker ready under `wait_ready`;
- other values are handed on as they are (an object with a `type`: the preload's
  `runtime:loop` report, pm2's `axm:monitor` custom metrics, `runtime:metrics`; see
  runtime.observe.appmetrics), and node's own `{"cmd": "NODE_..."}` messages are dropped;
- the master writes `'shutdown'` for `shutdown_with_message`;
- `send_socket` passes a listening socket as node itself does (a `NODE_HANDLE` message
  of type `net.Server` with the fd attached, `SCM_RIGHTS`): node turns it into a
  `net.Server` and hands it with the inner message, a `cmd` starting with `NODE_`, to
  `process.on('internalMessage')`, where the preload takes it (`COVER_CMD`, and
  `UNCOVER_CMD` to give it back). The app's own `process.on('message')` sees neither.

A line longer than MAX_MESSAGE_BYTES is dropped whole, as is one that is not JSON or
nests too deep for the decoder, and each wakeup reads at most
READ_SIZE bytes, so a worker that floods the channel cannot hold the loop. Node keeps the channel
out of its event loop's reckoning unless the app listens for messages, so an app that
never uses it exits as it would without it.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # asyncio is imported once the loop runs; this module is used before too
    from asyncio import AbstractEventLoop

CHANNEL_ENV = "NODE_CHANNEL_FD"
SERIALIZATION_ENV = "NODE_CHANNEL_SERIALIZATION_MODE"
# "1": this process's channel leads to the runtime. The node preload reports its metrics
# there and takes the variable out of its environment, as node does NODE_CHANNEL_FD, so no
# child of the app (whose channel leads to the app) reports to its parent.
RUNTIME_CHANNEL_ENV = "RUNTIME_IPC"
# Node routes a message whose `cmd` starts with "NODE_" to its internal listeners only.
COVER_CMD = "NODE_RUNTIME_COVER"  # serve this dead slot's socket (runtime/preload/node.cjs)
UNCOVER_CMD = "NODE_RUNTIME_UNCOVER"  # the slot's own worker is back: stop serving it
MAX_MESSAGE_BYTES = 64 * 1024
READ_SIZE = 64 * 1024

OnMessage = Callable[[object], None]


def make_channel() -> tuple[socket.socket, int]:
    """A socketpair: the master's end (non-blocking, close-on-exec) and the fd for the child."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setblocking(False)
    return ours, theirs.detach()


def encode(message: object) -> bytes:
    """One message as node's json serialization writes it."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class Channel:
    """The master's end of one worker's channel: read on the loop, write without blocking."""

    def __init__(self, sock: socket.socket, on_message: OnMessage) -> None:
        self._sock: socket.socket | None = sock
        self._on_message = on_message
        self._pending = b""
        self._dropping = False  # inside a line over MAX_MESSAGE_BYTES
        self._loop: AbstractEventLoop | None = None

    def start(self, loop: AbstractEventLoop) -> None:
        """Read messages from now on."""
        if self._sock is not None:
            self._loop = loop
            loop.add_reader(self._sock.fileno(), self._read)

    def send(self, message: object) -> bool:
        """Write one message; False if the worker cannot take it now (gone, or not reading)."""
        if self._sock is None:
            return False
        try:
            return self._sock.send(encode(message)) > 0
        except OSError:
            return False

    def send_socket(self, message: dict[str, object], fd: int) -> bool:
        """Pass the listening socket `fd` with `message` (a dict whose `cmd` starts with
        NODE_); False if the worker cannot take it now."""
        if self._sock is None:
            return False
        envelope = {"cmd": "NODE_HANDLE", "type": "net.Server", "msg": message}
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))]
        try:
            return self._sock.sendmsg([encode(envelope)], rights) > 0
        except OSError:
            return False

    def _read(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            data = sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            if self._dropping:
                self._dropping = False
            else:
                self._deliver(line)
        if len(self._pending) > MAX_MESSAGE_BYTES:
            self._pending, self._dropping = b"", True

    def _deliver(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except (ValueError, RecursionError):  # 64 KiB of `[` is too deep for the decoder
            return
        if isinstance(message, dict) and str(message.get("cmd", "")).startswith("NODE_"):
            return  # node's own handle-passing and cluster messages
        self._on_message(message)

    def close(self) -> None:
        """Stop reading and close the master's end; safe to call twice."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        with contextlib.suppress(OSError):
            sock.close()


def close_child_end(fd: int | None) -> None:
    """The parent's copy of the child's end, once the child has it."""
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)

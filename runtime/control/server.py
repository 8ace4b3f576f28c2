"""The master's side of the control socket: accept, check the peer, dispatch.

Each connection is bounded: a request line is at most MAX_LINE bytes and must arrive
within REQUEST_TIMEOUT_S of the connection (or of the previous reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from runtime.control.bind import bind_control
from runtime.control.protocol import (
    MAX_LINE,
    ControlError,
    decode,
    encode,
)
from runtime.logs import events

Reply = dict[str, Any]
CLOSE_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 5.0  # from connect (or the last reply) to the end of a request line
Handler = Callable[[dict[str, Any]], Awaitable[Reply | AsyncIterator[dict[str, Any]]]]


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ControlServer:
    """Serves requests on the control socket; every connection is a task it owns."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._uid = os.geteuid()
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket | None = None) -> None:
        """Serve on `sock` (bound before the loop started) or bind the path now."""
        listener = bind_control(self.path) if sock is None else sock
        self._server = await asyncio.start_unix_server(self._accept, sock=listener, limit=MAX_LINE)

    async def close(self) -> None:
        """Stop accepting, cancel every connection (`logs -f`, `monit`) and await them."""
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = None
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A new connection: its task is ours to cancel and await at close.

        Not a coroutine on purpose: the task `start_unix_server` would wrap one in
        reports its cancellation at shutdown as an error traceback on Python 3.11.
        """
        task = asyncio.get_running_loop().create_task(self._serve(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._connections.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            events.logger().error("control_error", error=repr(exc))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            sock = writer.get_extra_info("socket")
            uid = peer_uid(sock)
            if uid not in (self._uid, 0):
                writer.write(
                    encode(
                        {
                            "ok": False,
                            "error": f"permission denied: uid {uid} "
                            f"is not the runtime's uid {self._uid}",
                        }
                    )
                )
                await writer.drain()
                return
            while True:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    line = await reader.readline()
                if not line or not await self._answer(line, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> bool:
        try:
            result = await self._handler(decode(line))
        except ControlError as exc:
            writer.write(encode({"ok": False, "error": str(exc)}))
            await writer.drain()
            return True
        if isinstance(result, dict):
            writer.write(encode(result))
            await writer.drain()
            return True
        async for item in result:  # a stream (logs --follow) ends the connection
            writer.write(encode(item))
            await writer.drain()
        return False

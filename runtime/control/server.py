"""The master's side of the control socket: accept, check the peer, dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from runtime.control.protocol import (
    DIR_MODE,
    MAX_LINE,
    SOCKET_MODE,
    ControlError,
    decode,
    encode,
    socket_is_live,
)
from runtime.errors import RuntimeUserError

Reply = dict[str, Any]
Handler = Callable[[dict[str, Any]], Awaitable[Reply | AsyncIterator[dict[str, Any]]]]


class AlreadyRunning(Exception):
    """Another master answers on this control socket."""


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


class ControlSocketError(RuntimeUserError):
    """The control socket cannot be made where it should be."""


def bind_control(path: str) -> socket.socket:
    """Bind the control socket (or say in one line why it cannot be)."""
    try:
        return _bind_control(path)
    except AlreadyRunning:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ControlSocketError(f"control socket {path}: {reason} (set --control PATH)") from None


def _bind_control(path: str) -> socket.socket:
    """Refuse a live socket, replace a stale one, bind with mode 0600."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=DIR_MODE, exist_ok=True)
    if os.path.exists(path):
        if socket_is_live(path):
            raise AlreadyRunning(
                f"another runtime is already running this ecosystem (control socket {path})"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AlreadyRunning(f"control socket {path} is in use") from None
        raise
    finally:
        os.umask(old_umask)
    os.chmod(path, SOCKET_MODE)
    sock.listen(64)
    sock.setblocking(False)
    return sock


class ControlServer:
    """Serves requests on the control socket; every connection is a task it owns."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self._handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._uid = os.geteuid()

    async def start(self) -> None:
        sock = bind_control(self.path)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)

    async def close(self) -> None:
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._server = None

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
            while line := await reader.readline():
                if not await self._answer(line, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
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

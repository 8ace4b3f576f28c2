"""The readiness probe against tiny real HTTP servers on loopback and a Unix socket."""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import uvloop

from runtime.supervise.probe import probe_http, probe_unix

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _run(coro: Coroutine[Any, Any, None], loop_kind: str) -> None:
    factory = uvloop.new_event_loop if loop_kind == "uvloop" else asyncio.new_event_loop
    with asyncio.Runner(debug=True, loop_factory=factory) as runner:
        runner.run(coro)


def answering(status_line: bytes, requests: list[bytes]) -> Handler:
    """A handler that records the request head and answers with `status_line`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(status_line + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """A handler that accepts and then never answers."""
    await reader.read()  # until the probe gives up and closes
    writer.close()


LOOP_KINDS = ["asyncio", "uvloop"]


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
@pytest.mark.parametrize(
    ("status_line", "ready"),
    [
        (b"HTTP/1.1 200 OK", True),
        (b"HTTP/1.1 204 No Content", True),
        (b"HTTP/1.0 302 Found", True),
        (b"HTTP/1.1 404 Not Found", False),
        (b"HTTP/1.1 500 Internal Server Error", False),
        (b"HTTP/1.1 200", True),
        (b"SSH-2.0-OpenSSH_9.6", False),
    ],
    ids=["200", "204", "302", "404", "500", "no-reason", "not-http"],
)
def test_probe_http_status(status_line: bytes, ready: bool, loop_kind: str) -> None:
    """2xx and 3xx are ready; 4xx, 5xx and non-HTTP answers are not."""
    requests: list[bytes] = []

    async def scenario() -> None:
        server = await asyncio.start_server(answering(status_line, requests), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            assert await probe_http("127.0.0.1", port, "/healthz", timeout_s=5) is ready
        assert requests[0].startswith(b"GET /healthz HTTP/1.1\r\n")
        assert f"\r\nHost: 127.0.0.1:{port}\r\n".encode() in requests[0]
        assert b"\r\nConnection: close\r\n" in requests[0]

    _run(scenario(), loop_kind)


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_probe_http_closed_port_is_false_quickly(loop_kind: str) -> None:
    """A port nobody listens on is 'not ready', well within the timeout."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused

        async def scenario() -> None:
            started = time.monotonic()
            assert await probe_http("127.0.0.1", port, "/", timeout_s=2) is False
            assert time.monotonic() - started < 2

        _run(scenario(), loop_kind)


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_probe_http_silent_server_times_out(loop_kind: str) -> None:
    """A server that accepts but never answers is 'not ready' once the timeout passes."""

    async def scenario() -> None:
        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            started = time.monotonic()
            assert await probe_http("127.0.0.1", port, "/", timeout_s=0.3) is False
            elapsed = time.monotonic() - started
        assert 0.25 <= elapsed < 2

    _run(scenario(), loop_kind)


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_probe_http_adds_leading_slash(loop_kind: str) -> None:
    """A path written without '/' is sent as an absolute path."""
    requests: list[bytes] = []

    async def scenario() -> None:
        server = await asyncio.start_server(answering(b"HTTP/1.1 200 OK", requests), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            assert await probe_http("127.0.0.1", port, "ready", timeout_s=5)
        assert requests[0].startswith(b"GET /ready HTTP/1.1\r\n")

    _run(scenario(), loop_kind)


@pytest.mark.parametrize("loop_kind", LOOP_KINDS)
def test_probe_unix(loop_kind: str) -> None:
    """The Unix-socket probe is ready on 200, not on 503, and not when nothing listens."""
    requests: list[bytes] = []

    async def scenario(directory: str) -> None:
        path = os.path.join(directory, "app.sock")
        assert await probe_unix(path, "/up", timeout_s=1) is False
        for status_line, ready in [(b"HTTP/1.1 200 OK", True), (b"HTTP/1.1 503 Busy", False)]:
            server = await asyncio.start_unix_server(answering(status_line, requests), path)
            async with server:
                assert await probe_unix(path, "/up", timeout_s=5) is ready
        assert all(r.startswith(b"GET /up HTTP/1.1\r\nHost: localhost\r\n") for r in requests)

    with tempfile.TemporaryDirectory(prefix="rt-") as directory:
        _run(scenario(directory), loop_kind)

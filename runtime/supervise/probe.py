"""The optional `health:` readiness probe: one HTTP/1.1 GET, a 2xx or 3xx answer is ready.

Raw asyncio streams, no dependencies: the probe only reads the status line, then
closes (`Connection: close`). Any failure (refused, reset, timeout, not HTTP) is
"not ready yet", never an exception; the caller decides how often to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import re

MAX_STATUS_LINE_BYTES = 1024
_STATUS_RE = re.compile(rb"^HTTP/1\.[01] ([1-5]\d\d)(?: |\r?$)")


def _request(http_path: str, host_header: str) -> bytes:
    if not http_path.startswith("/"):
        http_path = "/" + http_path
    return (
        f"GET {http_path} HTTP/1.1\r\n"
        f"Host: {host_header}\r\n"
        "User-Agent: runtime-health\r\n"
        "Accept: */*\r\n"
        "Connection: close\r\n\r\n"
    ).encode("latin-1")


async def _exchange(
    streams: tuple[asyncio.StreamReader, asyncio.StreamWriter], request: bytes
) -> bool:
    reader, writer = streams
    try:
        writer.write(request)
        await writer.drain()
        line = await reader.readuntil(b"\n")
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    match = _STATUS_RE.match(line.rstrip(b"\n"))
    if match is None:
        return False
    return 200 <= int(match.group(1)) < 400


async def probe_http(host: str, port: int, path: str, timeout_s: float) -> bool:
    """True when `GET path` on host:port answers 2xx/3xx within `timeout_s`."""
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        async with asyncio.timeout(timeout_s):
            streams = await asyncio.open_connection(host, port, limit=MAX_STATUS_LINE_BYTES)
            return await _exchange(streams, _request(path, host_header))
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False


async def probe_unix(path: str, http_path: str, timeout_s: float) -> bool:
    """True when `GET http_path` over the Unix socket at `path` answers 2xx/3xx in time."""
    try:
        async with asyncio.timeout(timeout_s):
            streams = await asyncio.open_unix_connection(path, limit=MAX_STATUS_LINE_BYTES)
            return await _exchange(streams, _request(http_path, "localhost"))
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False

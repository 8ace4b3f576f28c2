"""HTTP/1.1 messages as the web server needs them: a bounded request reader, reply heads,
JSON bodies and Server-Sent Events (stdlib only; no keep-alive, no chunked bodies)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from runtime.logs.formats import dumps_line

MAX_HEADERS = 64
MAX_REQUEST_BYTES = 16 * 1024  # request line and headers together
MAX_BODY_BYTES = 1024  # a body is read (so closing does not reset the reply) and ignored


@dataclass(frozen=True, slots=True)
class Request:
    """One request's line and headers (names lower-cased); a body is never kept."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    raw_query: str = ""


class BadRequest(Exception):
    """A request we will not parse further: answered 400 (or `code`)."""

    def __init__(self, code: int = 400, message: str = "bad request") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def read_request(reader: asyncio.StreamReader) -> Request | None:
    """The request line and headers, MAX_REQUEST_BYTES at most, and a body of at most
    MAX_BODY_BYTES, read and dropped (closing on unread bytes would reset the reply)."""
    line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest
    headers: dict[str, str] = {}
    size = len(line)
    for _ in range(MAX_HEADERS):
        raw = await reader.readline()
        size += len(raw)
        if size > MAX_REQUEST_BYTES:
            raise BadRequest
        if raw in (b"\r\n", b"\n", b""):
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise BadRequest
        headers[name.strip().lower()] = value.strip()
    else:
        raise BadRequest
    await _skip_body(reader, headers)
    url = urlsplit(parts[1])
    return Request(parts[0].upper(), url.path or "/", parse_qs(url.query), headers, url.query)


async def _skip_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    if "transfer-encoding" in headers:
        raise BadRequest(400, "bad request: a chunked body is not read, send none")
    length = headers.get("content-length", "0").strip() or "0"
    if not length.isdigit():
        raise BadRequest
    if int(length) > MAX_BODY_BYTES:
        raise BadRequest(413, f"request body over {MAX_BODY_BYTES} bytes")
    if int(length):
        await reader.readexactly(int(length))


def response_head(code: int, content_type: str, length: int | None, extra: str = "") -> bytes:
    reason = HTTPStatus(code).phrase
    head = f"HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\n"
    if length is not None:
        head += f"Content-Length: {length}\r\n"
    head += "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
    return (head + extra + "Connection: close\r\n\r\n").encode("latin-1")


def json_body(value: Any) -> bytes:
    return dumps_line(value)


def sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + dumps_line(data) + b"\n"

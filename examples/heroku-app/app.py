"""A small JSON HTTP API that runs under `runtime` (or on its own).

Standard library + asyncio only (uvloop when importable). It serves on:

* the inherited listening socket at fd 3 when `LISTEN_FDS` is set and `LISTEN_PID`
  is this process's pid (the systemd socket-activation protocol the runtime uses);
* otherwise a socket it binds itself on `$HOST:$PORT` (default 127.0.0.1:3000), with
  SO_REUSEPORT when `$RUNTIME_APP` is set so the instances of one app can share it.

Once serving it sends `READY=1` to `$NOTIFY_SOCKET` (sd_notify) when that is set.

Routes (all JSON, `Content-Length` always set, HTTP/1.1 keep-alive):

    GET /             message, app, instance, pid
    GET /health       {"ok": true}
    GET /crash        answers, then the process exits with code 1
    GET /leak?mb=N    keeps N more MiB (default 20) referenced; reports the total
    GET /slow?ms=N    answers after N ms (default 1000): an in-flight request to stop on

SIGTERM / SIGINT: stop accepting, let in-flight requests finish (at most
`$GRACEFUL_TIMEOUT` seconds, default 5), exit 0. A repeated SIGTERM changes nothing;
a second SIGINT exits at once (130).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from urllib.parse import parse_qs, urlsplit

SD_LISTEN_FDS_START = 3
DEFAULT_PORT = 3000
DEFAULT_MESSAGE = "hello from the heroku-app example"
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
KEEPALIVE_TIMEOUT = 75.0  # longer than the idle timeouts of common load balancers
HEADER_TIMEOUT = 15.0
MAX_LEAK_STEP_MB = 1024
MAX_SLOW_MS = 60_000

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}
TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def instance_number() -> int:
    try:
        return int(os.environ.get("RUNTIME_INSTANCE", "0"))
    except ValueError:
        return 0


def log(level: str, message: str, **fields: object) -> None:
    """One JSON object per line: the runtime merges it into its own log record."""
    record = {"level": level, "message": message, "instance": instance_number(), **fields}
    stream = sys.stderr if level == "error" else sys.stdout
    stream.write(json.dumps(record, separators=(",", ":")) + "\n")
    stream.flush()


# --- the socket -------------------------------------------------------------------------


def inherited_socket() -> socket.socket | None:
    """fd 3 when the systemd protocol says it is ours (LISTEN_FDS >= 1 and LISTEN_PID == pid)."""
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
        owner = int(os.environ.get("LISTEN_PID", "0"))
    except ValueError:
        return None
    if count < 1 or owner != os.getpid():
        return None
    # Like sd_listen_fds(unset_environment=1): children of ours must not claim fd 3.
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)
    sock = socket.socket(fileno=SD_LISTEN_FDS_START)  # family and type read from the fd
    sock.setblocking(False)
    return sock


def own_socket(host: str, port: int, *, share: bool) -> socket.socket:
    """Bind $HOST:$PORT. `share`: SO_REUSEPORT, so sibling instances can bind it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share and hasattr(socket, "SO_REUSEPORT"):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def describe(sock: socket.socket, inherited: bool) -> str:
    if inherited:
        return f"listening on fd {SD_LISTEN_FDS_START}"
    host, port = sock.getsockname()[:2]
    return f"listening on {host}:{port}"


def sd_notify(state: str) -> None:
    """Send one datagram to $NOTIFY_SOCKET; a leading '@' is the abstract namespace."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log("warn", "sd_notify failed", state=state, error=str(exc))


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --- HTTP -------------------------------------------------------------------------------


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    __slots__ = ("headers", "keep_alive", "method", "path", "query", "version")

    def __init__(self, method: str, target: str, version: str, headers: dict[str, str]) -> None:
        self.method = method
        self.version = version
        self.headers = headers
        parts = urlsplit(target)
        self.path = parts.path or "/"
        self.query = parse_qs(parts.query, keep_blank_values=True)
        connection = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        if version == "HTTP/1.1":
            self.keep_alive = "close" not in connection
        else:
            self.keep_alive = "keep-alive" in connection


def parse_request_line(line: str) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not method or not set(method) <= TOKEN_CHARS:
        raise HttpError(400, "malformed method")
    if not version.startswith("HTTP/") or len(version) != 8 or version[6] != ".":
        raise HttpError(400, "malformed HTTP version")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise HttpError(505, f"{version} is not supported")
    if target.startswith(("http://", "https://")):  # absolute form
        target = urlsplit(target)._replace(scheme="", netloc="").geturl() or "/"
    if not target.startswith("/") or any(ord(c) < 0x21 or ord(c) == 0x7F for c in target):
        raise HttpError(400, "malformed request target")
    return method, target, version


def parse_headers(lines: list[str]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep or not name or not set(name) <= TOKEN_CHARS:  # also rejects line folding
            raise HttpError(400, "malformed header line")
        if "\0" in value:
            raise HttpError(400, "malformed header value")
        key, value = name.lower(), value.strip(" \t")
        if key not in headers:
            headers[key] = value
        elif key in ("content-length", "host", "transfer-encoding"):
            if key != "content-length" or headers[key] != value:  # request smuggling shapes
                raise HttpError(400, f"duplicate {name} header")
        else:
            headers[key] = f"{headers[key]}, {value}"
    return headers


def parse_head(head: bytes) -> Request:
    """Request line and headers (without the final CRLF CRLF); raises HttpError."""
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = parse_request_line(lines[0])
    headers = parse_headers(lines[1:])
    if version == "HTTP/1.1" and "host" not in headers:
        raise HttpError(400, "missing Host header")
    return Request(method, target, version, headers)


async def read_body(reader: asyncio.StreamReader, request: Request) -> bytes:
    """The body by Content-Length or chunked encoding (read, then ignored by the routes)."""
    te = request.headers.get("transfer-encoding")
    cl = request.headers.get("content-length")
    if te is not None:
        if cl is not None:
            raise HttpError(400, "both Content-Length and Transfer-Encoding")
        if te.lower() != "chunked":
            raise HttpError(501, f"transfer-encoding {te!r} is not supported")
        return await read_chunked(reader)
    if cl is None:
        return b""
    if not cl.isdigit():
        raise HttpError(400, "malformed Content-Length")
    length = int(cl)
    if length > MAX_BODY_BYTES:
        raise HttpError(413, "body too large")
    return await reader.readexactly(length) if length else b""


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as exc:
            raise HttpError(400, "malformed chunk size") from exc
        if size < 0 or len(body) + size > MAX_BODY_BYTES:
            raise HttpError(413 if size > 0 else 400, "body too large")
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise HttpError(400, "malformed chunk")


def render(
    status: int, payload: object, *, keep_alive: bool, head: bool = False, extra: str = ""
) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode() + b"\n"
    lines = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
        f"{extra}\r\n"
    )
    return lines.encode("latin-1") + (b"" if head else body)


# --- the application --------------------------------------------------------------------


class App:
    def __init__(self) -> None:
        self.message = os.environ.get("MESSAGE") or DEFAULT_MESSAGE
        self.name = os.environ.get("RUNTIME_APP")
        self.instance = instance_number()
        self.pid = os.getpid()
        self.leaked: list[bytes] = []
        self.stopping = False
        self.connections: dict[asyncio.Task[None], bool] = {}  # task -> busy
        self.idle_event = asyncio.Event()
        self.crash_after_response = False

    # routes: each returns (status, payload); HttpError from a route keeps the connection
    async def route(self, request: Request) -> tuple[int, object, str]:
        handler = {
            "/": self.index,
            "/health": self.health,
            "/crash": self.crash,
            "/leak": self.leak,
            "/slow": self.slow,
        }.get(request.path)
        if handler is None:
            return 404, {"error": "not found", "path": request.path}, ""
        if request.method not in ("GET", "HEAD"):
            return 405, {"error": "method not allowed"}, "Allow: GET, HEAD\r\n"
        try:
            status, payload = await handler(request)
        except HttpError as exc:
            return exc.status, {"error": exc.message}, ""
        return status, payload, ""

    async def index(self, request: Request) -> tuple[int, object]:
        return 200, {
            "message": self.message,
            "app": self.name,
            "instance": self.instance,
            "pid": self.pid,
        }

    async def health(self, request: Request) -> tuple[int, object]:
        return 200, {"ok": True}

    async def crash(self, request: Request) -> tuple[int, object]:
        self.crash_after_response = True
        return 200, {"crashing": self.pid}

    async def leak(self, request: Request) -> tuple[int, object]:
        raw = request.query.get("mb", ["20"])[-1]
        if not raw.isdigit() or not 0 < int(raw) <= MAX_LEAK_STEP_MB:
            raise HttpError(400, f"mb must be an integer in 1..{MAX_LEAK_STEP_MB}")
        # A non-zero fill touches every page, so the memory shows up in RSS.
        self.leaked.append(b"\xa5" * (int(raw) << 20))
        total = sum(len(b) for b in self.leaked) >> 20
        return 200, {"leaked_mb": total, "rss_mb": round(rss_bytes() / 2**20, 1), "pid": self.pid}

    async def slow(self, request: Request) -> tuple[int, object]:
        raw = request.query.get("ms", ["1000"])[-1]
        if not raw.isdigit() or int(raw) > MAX_SLOW_MS:
            raise HttpError(400, f"ms must be an integer in 0..{MAX_SLOW_MS}")
        await asyncio.sleep(int(raw) / 1000)
        return 200, {"slept_ms": int(raw), "pid": self.pid}

    # connections
    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if self.stopping:
            writer.close()
            return
        self.connections[task] = False
        try:
            await self.serve_requests(task, reader, writer)
        except (asyncio.CancelledError, OSError, EOFError):
            pass  # cancelled while idle at shutdown, or the peer went away
        finally:
            self.connections.pop(task, None)
            if not any(self.connections.values()):
                self.idle_event.set()
            writer.close()
            if self.crash_after_response:
                self.crash_now()

    async def serve_requests(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        first = True
        while not self.stopping:
            try:
                async with asyncio.timeout(HEADER_TIMEOUT if first else KEEPALIVE_TIMEOUT):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                writer.write(render(431, {"error": "headers too large"}, keep_alive=False))
                await writer.drain()
                return
            except (TimeoutError, asyncio.IncompleteReadError):
                return
            first = False
            self.connections[task] = True
            self.idle_event.clear()
            keep_alive = await self.handle_one(head[:-4], reader, writer)
            self.connections[task] = False
            if not any(self.connections.values()):
                self.idle_event.set()
            if not keep_alive or self.crash_after_response:
                return

    async def handle_one(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; True to keep the connection open for the next one."""
        try:
            request = parse_head(head.lstrip(b"\r\n"))
            if request.headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            async with asyncio.timeout(HEADER_TIMEOUT):
                await read_body(reader, request)
        except HttpError as exc:
            # After a bad request the stream position is unknown: answer and close.
            return await self.refuse(writer, exc.status, exc.message)
        except TimeoutError:
            return await self.refuse(writer, 408, "request body timeout")
        except asyncio.LimitOverrunError:
            return await self.refuse(writer, 400, "malformed chunk")
        status, payload, extra = await self.route(request)
        keep_alive = request.keep_alive and not self.stopping and not self.crash_after_response
        writer.write(
            render(
                status, payload, keep_alive=keep_alive, head=request.method == "HEAD", extra=extra
            )
        )
        await writer.drain()
        return keep_alive

    @staticmethod
    async def refuse(writer: asyncio.StreamWriter, status: int, message: str) -> bool:
        writer.write(render(status, {"error": message}, keep_alive=False))
        await writer.drain()
        return False

    def crash_now(self) -> None:
        log("error", "crashing on request (GET /crash)", pid=self.pid)
        sys.stdout.flush()
        os._exit(1)

    async def drain(self, grace: float) -> bool:
        """Close idle connections now; wait up to `grace` s for busy ones. True if all done."""
        for task, busy in list(self.connections.items()):
            if not busy:
                task.cancel()
        deadline = time.monotonic() + grace
        while any(self.connections.values()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self.idle_event.wait(), remaining)
            except TimeoutError:
                return False
            self.idle_event.clear()
            # connections that went idle between requests: close them too
            for task, busy in list(self.connections.items()):
                if not busy:
                    task.cancel()
        return True


async def main() -> int:
    loop = asyncio.get_running_loop()
    sock = inherited_socket()
    inherited = sock is not None
    if sock is None:
        host = os.environ.get("HOST", "127.0.0.1")
        try:
            port = int(os.environ.get("PORT") or DEFAULT_PORT)
            # Under the runtime without `listen:` (the direct form `-i N`), the instances
            # of one app share the port with SO_REUSEPORT; outside it a busy port is an error.
            sock = own_socket(host, port, share=bool(os.environ.get("RUNTIME_APP")))
        except (ValueError, OSError) as exc:
            log("error", "cannot listen", host=host, port=os.environ.get("PORT"), error=str(exc))
            return 1
    app = App()
    server = await asyncio.start_server(app.serve, sock=sock, limit=MAX_HEADER_BYTES)
    stop = asyncio.Event()

    def on_stop_signal(signum: int) -> None:
        # A platform may signal every process at once, so a second SIGTERM (the platform's
        # and the master's) is routine: ignore it. A second Ctrl-C means "now".
        if stop.is_set() and signum == signal.SIGINT:
            os._exit(130)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop_signal, signum)
    log("info", describe(sock, inherited))
    sd_notify("READY=1")

    await stop.wait()
    grace = float(os.environ.get("GRACEFUL_TIMEOUT", "5"))
    app.stopping = True
    sd_notify("STOPPING=1")
    # Stop accepting, let what this loop pass accepted attach to the server, then close:
    # plain asyncio (3.11) drops a connection accepted in the same pass as close().
    # The master keeps its copy of an inherited socket, so nothing queued is lost.
    loop.remove_reader(sock.fileno())
    await asyncio.sleep(0.05)
    server.close()
    busy = sum(app.connections.values())
    log("info", "shutting down", in_flight=busy, grace_s=grace)
    clean = await app.drain(grace)
    log("info", "stopped" if clean else "stopped with requests still in flight")
    # Closing the loop restores SIG_DFL: a late SIGTERM must not turn this clean exit 0
    # into a death by signal. Blocked, it stays pending until the process is gone.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    return 0


def run() -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


if __name__ == "__main__":
    sys.exit(run())

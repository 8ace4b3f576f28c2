"""A fast HTTP/1.1 hello-world for the cluster benchmarks (uvloop, raw asyncio Protocol).

Runs two ways, the same code:

- under the runtime: `LISTEN_FDS` is set and `LISTEN_PID` is our pid, so it serves on the
  inherited fd 3 and sends `READY=1` to `$NOTIFY_SOCKET`;
- bare: no `LISTEN_FDS`, so it binds `$HOST:$PORT` itself with `SO_REUSEPORT` (start two
  copies for the bare baseline; the kernel spreads connections between them).

Answers every request with `<instance>\n` (`RUNTIME_INSTANCE`, or `INSTANCE` when bare), so
a client can tally which worker served it. Keep-alive unless the request says
`Connection: close`. Counts the requests it served and prints `served <instance> <n>` on
SIGTERM, then stops accepting, lets connections in flight finish (0.2 s) and exits 0.
`WORK_US` (default 0) makes each request spin that many microseconds of CPU first, for the
autoscaling benchmark's CPU-bound app. Minimal parsing on purpose (a request ends at the blank line; no bodies): it exists to
make the supervisor's share of the data path visible, not to be a web server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

try:
    import uvloop
except ImportError:  # still runs, only slower
    uvloop = None

INSTANCE = os.environ.get("RUNTIME_INSTANCE", os.environ.get("INSTANCE", "0"))
BODY = f"{INSTANCE}\n".encode()
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(BODY)
KEEP = HEAD + b"\r\n" + BODY
CLOSE = HEAD + b"Connection: close\r\n\r\n" + BODY
WORK_S = int(os.environ.get("WORK_US", "0")) / 1e6
SERVED = 0
STOPPING = False


def work() -> None:
    end = time.perf_counter() + WORK_S
    while time.perf_counter() < end:
        pass


class Http(asyncio.Protocol):
    __slots__ = ("buf", "transport")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        global SERVED
        buf = self.buf + data if self.buf else data
        out = []
        close = False
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            buf = buf[end + 4 :]
            SERVED += 1
            if WORK_S:
                work()
            if STOPPING or b"connection: close" in head:
                out.append(CLOSE)
                close = True
                break
            out.append(KEEP)
        self.buf = buf
        if out:
            self.transport.write(b"".join(out))  # type: ignore[attr-defined]
        if close:
            self.transport.close()


def sd_notify(message: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), path)


def listening_socket() -> socket.socket:
    if os.environ.get("LISTEN_FDS") and os.environ.get("LISTEN_PID") == str(os.getpid()):
        sock = socket.socket(fileno=3)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])))
        sock.listen(2048)
    sock.setblocking(False)
    return sock


async def main() -> None:
    global STOPPING
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    server = await loop.create_server(Http, sock=listening_socket(), backlog=2048)
    sd_notify("READY=1")
    await stop.wait()
    STOPPING = True
    server.close()
    await asyncio.sleep(0.2)
    print(f"served {INSTANCE} {SERVED}", flush=True)


if __name__ == "__main__":
    if uvloop is not None:
        uvloop.install()
    asyncio.run(main())
    sys.exit(0)

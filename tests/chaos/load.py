"""A small HTTP load generator for chaos runs: threads of sequential GETs, each request
bounded by its own timeout, every outcome kept with the worker that served it.

Fresh connections (`Connection: close`) or keep-alive ones. A keep-alive failure is
charged to the pid that answered last on that connection (the body names it), so a test
can check that only requests in flight on a killed worker failed. A request that reaches
its timeout without an answer or an error counts as hanging. Shared by tests/chaos and
bench/chaos.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

REQUEST_CLOSE = b"GET / HTTP/1.1\r\nHost: chaos\r\nConnection: close\r\n\r\n"
REQUEST_KEEP = b"GET / HTTP/1.1\r\nHost: chaos\r\n\r\n"
TCP_STATES = {"01": "ESTABLISHED", "06": "TIME_WAIT", "08": "CLOSE_WAIT", "0A": "LISTEN"}


@dataclass
class Failure:
    """One request that got no answer: when, why, and on which worker's connection."""

    at: float  # monotonic seconds
    error: str
    pid: int | None  # the worker that answered last on this connection (keep-alive)
    fresh: bool  # the first request on its connection
    hung: bool  # reached the timeout with neither an answer nor an error


@dataclass
class Tally:
    """Everything the threads saw; read it after the load has stopped."""

    ok: int = 0
    failures: list[Failure] = field(default_factory=list)
    by_pid: dict[int, int] = field(default_factory=dict)
    connections: int = 0

    @property
    def hung(self) -> list[Failure]:
        return [f for f in self.failures if f.hung]

    @property
    def total(self) -> int:
        return self.ok + len(self.failures)

    def served_ratio(self) -> float:
        return self.ok / self.total if self.total else 0.0


class BadAnswer(Exception):
    """An answer that is not a whole 200 response."""


def read_answer(sock: socket.socket) -> tuple[int, bool]:
    """One whole response from `sock`: (the answering pid, whether the server closes)."""
    buf = b""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        chunk = sock.recv(4096)
        if not chunk:
            raise BadAnswer("closed before an answer" if not buf else "closed mid-answer")
        buf += chunk
    head, body = buf[:end].lower(), buf[end + 4 :]
    if not head.startswith(b"http/1.1 200"):
        raise BadAnswer(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise BadAnswer("closed mid-body")
        body += chunk
    words = body.split()
    pid = int(words[-1]) if words and words[-1].isdigit() else 0
    return pid, b"connection: close" in head


class Load:
    """`threads` clients looping on GET / until stopped; `with Load(...) as load:`."""

    def __init__(
        self,
        port: int,
        *,
        threads: int = 4,
        keepalive: bool = False,
        timeout_s: float = 3.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.addr = (host, port)
        self.keepalive = keepalive
        self.timeout_s = timeout_s
        self.tally = Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self.started = self.stopped = 0.0
        self.open_sockets = 0  # client sockets not closed yet (0 once every thread ended)

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the threads; each ends within one request timeout."""
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout_s + 5)
        self.stopped = time.monotonic()

    def alive_threads(self) -> int:
        return sum(t.is_alive() for t in self._threads)

    def snapshot(self) -> tuple[int, int]:
        """(answered, failed) so far."""
        with self._lock:
            return self.tally.ok, len(self.tally.failures)

    @contextlib.contextmanager
    def _connection(self) -> Iterator[socket.socket]:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with self._lock:
            self.open_sockets += 1
            self.tally.connections += 1
        try:
            sock.settimeout(self.timeout_s)
            yield sock
        finally:
            sock.close()
            with self._lock:
                self.open_sockets -= 1

    def _record(self, pid: int | None, failure: Failure | None) -> None:
        with self._lock:
            if failure is not None:
                self.tally.failures.append(failure)
            elif pid is not None:
                self.tally.ok += 1
                self.tally.by_pid[pid] = self.tally.by_pid.get(pid, 0) + 1

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._connection() as sock:
                self._session(sock)

    def _session(self, sock: socket.socket) -> None:
        """Requests on one connection until it ends (at once with `Connection: close`)."""
        last_pid: int | None = None
        fresh = True
        try:
            sock.connect(self.addr)
            while not self._stop.is_set():
                sock.sendall(REQUEST_KEEP if self.keepalive else REQUEST_CLOSE)
                last_pid, closing = read_answer(sock)
                self._record(last_pid, None)
                fresh = False
                if closing or not self.keepalive:
                    return
        except (OSError, BadAnswer) as exc:
            hung = isinstance(exc, TimeoutError)
            self._record(None, Failure(time.monotonic(), repr(exc), last_pid, fresh, hung))


class Killer:
    """SIGKILL a random live worker of `pids()` every `interval_s`, on a thread."""

    def __init__(
        self, pids: Callable[[], list[int]], interval_s: float = 0.2, seed: int = 13
    ) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self.rng = random.Random(seed)
        self.killed: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        next_at = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval_s
            candidates = self.pids()
            if not candidates:
                continue
            pid = self.rng.choice(candidates)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.killed.append((time.monotonic(), pid))


def children(pid: int) -> list[int]:
    """The live (not zombie) children of `pid`, from /proc."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            out.extend(int(c) for c in (task / "children").read_text().split())
    return [c for c in out if _running(c)]


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def tcp_sockets(port: int) -> list[tuple[str, int]]:
    """(state, queued bytes or, for a listener, queued connections) of every TCP socket
    whose local port is `port` (IPv4 and IPv6), from /proc/net/tcp*."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, state, queues = fields[1], fields[3], fields[4]
                if int(local.rsplit(":", 1)[1], 16) == port:
                    rx = int(queues.split(":")[1], 16)
                    found.append((TCP_STATES.get(state, state), rx))
    return found


def lingering(port: int) -> list[tuple[str, int]]:
    """Sockets on `port` that mean a connection is left hanging: any connected socket
    but TIME_WAIT (a closed one), and listeners with connections queued."""
    return [
        (state, rx)
        for state, rx in tcp_sockets(port)
        if (state == "LISTEN" and rx > 0) or state not in ("LISTEN", "TIME_WAIT")
    ]


def wait_no_lingering(port: int, timeout_s: float = 5.0) -> list[tuple[str, int]]:
    """What still lingers on `port` after up to `timeout_s` (empty is the goal)."""
    deadline = time.monotonic() + timeout_s
    while (left := lingering(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up() -> None:
    """Bring up `lo` in a fresh network namespace (`unshare --net` leaves it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sh", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sh", b"lo", flags | IFF_UP))

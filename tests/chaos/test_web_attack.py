"""`--web` under attack: idle connections and slowloris must not deny `/health` (#13, fault 5)."""

from __future__ import annotations

import contextlib
import http.client
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.chaos.probes import assert_fast, health
from tests.integration.conftest import Master, free_port, py, write_ecosystem

SLEEPER = "import time\nwhile True: time.sleep(1)"


def start(run_master: Callable[..., Master], tmp_path: Path) -> tuple[Master, int]:
    port = free_port()
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "w", **py(SLEEPER)}])
    master = run_master(
        str(eco), "--web", f"127.0.0.1:{port}", "--control", str(tmp_path / "ctl.sock")
    )
    master.wait_event("worker_ready")
    deadline = time.monotonic() + 10
    while health(port)[0] != 200:
        assert time.monotonic() < deadline, "/health never answered 200"
        time.sleep(0.05)
    return master, port


@contextmanager
def connections(port: int, count: int, first: bytes = b"") -> Iterator[list[socket.socket]]:
    """`count` open TCP connections to the web port, each having sent `first`."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if first:
                sock.sendall(first)
            socks.append(sock)
        yield socks
    finally:
        for sock in socks:
            sock.close()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed (or reset) this connection."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def test_health_answers_fast_during_an_idle_connection_flood(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """500 idle connections: /health still answers 200 and fast, and idle ones are dropped."""
    _master, port = start(run_master, tmp_path)
    with connections(port, 500) as idle:
        answers = [health(port) for _ in range(20)]
        assert [code for code, _ in answers] == [200] * 20
        assert_fast(answers)
        deadline = time.monotonic() + 10
        while not all(closed_by_server(s) for s in idle):
            assert time.monotonic() < deadline, "idle connections were never closed"
            time.sleep(0.1)


def test_health_answers_fast_during_a_slowloris(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """200 connections dribbling a header byte a second: /health stays 200 and fast."""
    _master, port = start(run_master, tmp_path)
    with connections(port, 200, b"GET /status HTTP/1.1\r\nX-a: ") as slow:
        answers: list[tuple[int, float]] = []
        end = time.monotonic() + 6
        while time.monotonic() < end:
            for sock in slow:
                with contextlib.suppress(OSError):  # dropped by the server: as it should be
                    sock.send(b"a")
            tick = time.monotonic() + 1
            while time.monotonic() < tick:
                answers.append(health(port))
                time.sleep(0.05)
        assert {code for code, _ in answers} == {200}
        assert_fast(answers)
        assert all(closed_by_server(s) for s in slow), "a slowloris connection outlived 6 s"


def test_event_streams_have_their_own_cap(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """Past the /events cap a new stream gets 503, /health and /status still answer, and the
    master stops with the streams open without a traceback."""
    master, port = start(run_master, tmp_path)
    request = b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n"
    with connections(port, 40, request) as streams:
        for sock in streams[:16]:
            assert sock.recv(12) == b"HTTP/1.1 200"
        refused = [s.recv(12) for s in streams[16:]]
        assert refused == [b"HTTP/1.1 503"] * len(refused)
        assert health(port)[0] == 200
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/status")
        assert conn.getresponse().status == 200
        conn.close()
        master.signal(signal.SIGTERM)
        assert master.wait_exit() == 0
    assert "Traceback" not in master.stderr()

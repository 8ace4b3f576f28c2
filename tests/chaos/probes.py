"""Asking a running master whether it still answers (control `ping`, `/health`, its RSS),
and holding connections on its `--web` port as an attacker would."""

from __future__ import annotations

import contextlib
import json
import socket
import statistics
import threading
import time
from pathlib import Path

PROBE_EVERY_S = 0.05
# The target, /health under 100 ms during the attacks, is measured beside an
# unattacked baseline in bench/web_siege.py: a parallel suite on 2 cores has stalled
# one probe past 100 ms of its own scheduling. The tests bound the median to 100 ms
# and each answer to a second (a denial shows as a 503 or a timeout).
HEALTH_MEDIAN_LIMIT_S = 0.1
HEALTH_LIMIT_S = 1.0
SLOWLORIS_HEAD = b"GET /health HTTP/1.1\r\nHost: x\r\n"


def ping(control: Path, timeout_s: float = 2.0) -> bool:
    """One `ping` on the control socket, answered `ok` within `timeout_s`."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(str(control))
        s.sendall(b'{"v": 1, "cmd": "ping", "target": null, "args": {}}\n')
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return bool(json.loads(reply).get("ok"))


def health(port: int, timeout_s: float = 2.0) -> tuple[int, float]:
    """GET /health on `--web`: (status, seconds from connect to the whole answer)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    took = time.monotonic() - started
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, took


def assert_fast(answers: list[tuple[int, float]]) -> None:
    """Every /health of `answers` ((status, seconds)) in time: see HEALTH_LIMIT_S."""
    took = [t for _, t in answers]
    median = statistics.median(took)
    assert median < HEALTH_MEDIAN_LIMIT_S, f"median /health {median * 1000:.0f} ms"
    assert max(took) < HEALTH_LIMIT_S, f"slowest /health {max(took) * 1000:.0f} ms"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def alive(pid: int) -> bool:
    """Running (not a zombie), from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class Attacker:
    """Holds `count` connections to the web port: idle, or dribbling a header byte each
    tick (slowloris); a connection the server closes is opened again at once."""

    def __init__(self, port: int, count: int, slowloris: bool) -> None:
        self.port = port
        self.count = count
        self.slowloris = slowloris
        self.reconnects = 0
        self._socks: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Attacker:
        for _ in range(self.count):
            self._socks.append(self._open())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        for s in self._socks:
            s.close()

    def _open(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        s.setblocking(False)
        if self.slowloris:
            with contextlib.suppress(OSError):
                s.send(SLOWLORIS_HEAD)
        return s

    def _closed(self, s: socket.socket) -> bool:
        try:
            return s.recv(4096) == b""  # an answer (a 408, a 503) still leaves it open
        except BlockingIOError:
            return False
        except OSError:
            return True

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for i, s in enumerate(self._socks):
                if self.slowloris:
                    with contextlib.suppress(OSError):
                        s.send(b"X")
                if self._closed(s):
                    s.close()
                    with contextlib.suppress(OSError):
                        self._socks[i] = self._open()
                        self.reconnects += 1


def probe_during(
    port: int, seconds: float, every_s: float = PROBE_EVERY_S
) -> list[tuple[int, float]]:
    """(status, seconds) of a /health every `every_s` for `seconds` (a refused or timed-out
    one counts as (0, 2.0))."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(health(port, timeout_s=2.0))
        except OSError:
            out.append((0, 2.0))
        time.sleep(every_s)
    return out

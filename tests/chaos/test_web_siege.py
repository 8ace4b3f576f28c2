"""`--web` under a sustained attack (#13, "Prove it"): idle connections and slowloris never
deny or slow `/health`. Unlike test_web_attack.py's fixed sets of connections, the attacker
here keeps ATTACKERS connections open by reconnecting whatever the server drops (evicted or
timed out), while `/health` is asked every 50 ms: each answer 200, each under 100 ms.
"""

from __future__ import annotations

import contextlib
import socket
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.probes import health
from tests.integration.conftest import free_port, write_ecosystem

ATTACKERS = 200
ATTACK_S = 4.0
PROBE_EVERY_S = 0.05
HEALTH_LIMIT_S = 0.1
SLOWLORIS_HEAD = b"GET /health HTTP/1.1\r\nHost: x\r\n"


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


def _probe_during(port: int, seconds: float) -> list[tuple[int, float]]:
    """(status, seconds) of a /health every PROBE_EVERY_S for `seconds`."""
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            out.append(health(port, timeout_s=2.0))
        except OSError:
            out.append((0, 2.0))
        time.sleep(PROBE_EVERY_S)
    return out


@pytest.mark.parametrize("slowloris", [False, True], ids=["idle", "slowloris"])
def test_health_answers_fast_under_a_sustained_attack(
    tmp_path: Path, run_master: Any, slowloris: bool
) -> None:
    """With 200 idle (or slowloris) connections held on --web, every /health is 200 in
    under 100 ms."""
    web = free_port()
    app = {"name": "s", "script": "/bin/sleep", "args": ["600"], "interpreter": "none"}
    m = run_master(str(write_ecosystem(tmp_path / "eco.json", [app])), "--web", f"127.0.0.1:{web}")
    m.wait_event("worker_ready")
    quiet = _probe_during(web, 0.5)
    assert {s for s, _ in quiet} == {200}
    with Attacker(web, ATTACKERS, slowloris) as attacker:
        time.sleep(0.3)
        probes = _probe_during(web, ATTACK_S)
    times = [t for _, t in probes]
    kind = "slowloris" if slowloris else "idle"
    print(
        f"\nweb attack={kind} connections={ATTACKERS} reconnects={attacker.reconnects}"
        f" probes={len(probes)} non200={sum(s != 200 for s, _ in probes)}"
        f" median_ms={statistics.median(times) * 1000:.1f} max_ms={max(times) * 1000:.1f}"
        f" quiet_max_ms={max(t for _, t in quiet) * 1000:.1f}"
    )
    assert [s for s, _ in probes if s != 200] == []
    assert max(times) < HEALTH_LIMIT_S
    assert m.proc.poll() is None

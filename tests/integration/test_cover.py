"""Covering a dead slot (reuseport, node): what the kernel queued on a worker's socket
before the master saw it die is served by the other workers, not left for the
replacement (runtime/preload/node.cjs, "Covering")."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.conftest import free_port, pid_alive, wait_until, write_ecosystem
from tests.integration.test_reliability import control

CONNECTIONS = 20
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
SLOW_START_MS = 4000  # instance 1's start while the marker file exists
WAIT_S = 5.0  # for a worker to take or let go a socket
COVER_DEADLINE_S = 2.0  # well under the replacement's start: only a cover answers in time

# Instance 1 starts slowly while $SLOW_FILE exists; every answer names the worker's pid.
# The app's own 'message' listener must never see the runtime's cover messages.
APP = """
const fs = require('node:fs');
const http = require('node:http');
process.on('message', (m) => console.log('app got message ' + JSON.stringify(m)));
const server = http.createServer((req, res) => {
  const answer = () => res.end(JSON.stringify({ pid: process.pid }));
  if (req.url === '/slow') setTimeout(answer, 1000);
  else answer();
});
if (process.env.OWN_STOP) process.on('SIGINT', () => server.close(() => process.exit(0)));
const slow = process.env.NODE_APP_INSTANCE === '1' && fs.existsSync(process.env.SLOW_FILE);
setTimeout(() => server.listen(process.env.PORT), slow ? Number(process.env.SLOW_MS) : 0);
"""


def socket_inodes(pid: int) -> set[str]:
    """The `socket:[N]` links among a process's fds."""
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:"):
            found.add(link)
    return found


CUT = 0  # what `answers` says for a connection closed or reset without an answer


def answers(clients: list[socket.socket], deadline: float) -> dict[socket.socket, int]:
    """The pid each client's answer names (CUT: closed without one), for those that ended
    before `deadline`."""
    buffers = dict.fromkeys(clients, b"")
    done: dict[socket.socket, int] = {}
    while len(done) < len(clients) and time.monotonic() < deadline:
        waiting = [c for c in clients if c not in done]
        readable, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
        for client in readable:
            try:
                chunk = client.recv(65536)
            except ConnectionResetError:
                done[client] = CUT
                continue
            buffers[client] += chunk
            if not chunk:  # Connection: close: the whole answer is in
                body = buffers[client].partition(b"\r\n\r\n")[2]
                done[client] = json.loads(body)["pid"] if body else CUT
    return done


def start_pair(tmp_path: Path, run_master, **env: str) -> tuple[Any, int, dict[int, int], Path]:
    """Two reuseport node workers, both ready: (master, port, pids by instance, marker)."""
    port, slow = free_port(), tmp_path / "slow"
    (tmp_path / "app.js").write_text(APP)
    app = {
        "name": "web",
        "script": "app.js",
        "exec_mode": "cluster",
        "instances": 2,
        "listen": [f"127.0.0.1:{port}"],
        "socket_sharing": "reuseport",
        "env": {"SLOW_FILE": str(slow), "PORT": str(port), "SLOW_MS": str(SLOW_START_MS), **env},
    }
    ctl = tmp_path / "c.sock"
    m = run_master(str(write_ecosystem(tmp_path / "eco.json", [app])), "--control", str(ctl))
    pids = {r["instance"]: r["pid"] for r in m.wait_event("worker_ready", count=2)}
    # whichever was ready first covered the other until it was ready too: wait for the
    # start-up covers to be let go, so each socket is served by its own worker only
    theirs = {i: os.readlink(f"/proc/{pid}/fd/3") for i, pid in pids.items()}
    for i, pid in pids.items():
        others = {link for j, link in theirs.items() if j != i}
        wait_until(
            lambda pid=pid, others=others: not others & socket_inodes(pid),
            WAIT_S,
            "the start-up covers to be let go",
        )
    return m, port, pids, slow


@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    """Client sockets to close at teardown, whether the test passed or not."""
    clients: list[socket.socket] = []
    yield clients
    for client in clients:
        client.close()


def queue_on_stopped(
    opened: list[socket.socket], port: int, stopped: int, serving: int, path: str = "/"
) -> list[socket.socket]:
    """With `stopped` (SIGSTOP) not accepting, CONNECTIONS requests: those queued on its
    socket, once `serving` has answered the rest (all are closed with `opened`)."""
    os.kill(stopped, signal.SIGSTOP)
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(CONNECTIONS)]
    opened.extend(clients)
    for client in clients:
        client.sendall(REQUEST.replace(b"GET / ", f"GET {path} ".encode()))
    served_first = answers(clients, time.monotonic() + 1.0 + (path == "/slow"))
    assert set(served_first.values()) == {serving}
    queued = [c for c in clients if c not in served_first]
    assert queued, "no connection was queued on the stopped worker's socket"  # P = 2**-20
    return queued


def test_queued_connections_of_a_killed_worker_are_served_by_the_other(
    tmp_path: Path, run_master, node: str, opened: list[socket.socket]
) -> None:
    """Worker 1 stopped from accepting (SIGSTOP) while fresh connections queue on its
    socket, then SIGKILLed: worker 0 answers every queued one long before worker 1's
    slow replacement is ready, and lets the socket go once it is."""
    m, port, pids, slow = start_pair(tmp_path, run_master)
    slot1_socket = os.readlink(f"/proc/{pids[1]}/fd/3")
    slow.touch()
    queued = queue_on_stopped(opened, port, pids[1], pids[0])

    os.kill(pids[1], signal.SIGKILL)
    covered = answers(queued, time.monotonic() + COVER_DEADLINE_S)
    assert len(covered) == len(queued), f"{len(queued) - len(covered)} left waiting"
    assert set(covered.values()) == {pids[0]}
    # the master covered after it saw the exit, but its log line may still be in the pipe
    (exited,) = m.wait_event("worker_exited", timeout=WAIT_S, instance=1)
    assert exited["covered_by"] == [pids[0]]
    assert slot1_socket in socket_inodes(pids[0]), "worker 0 serves slot 1's socket now"

    m.wait_event("worker_ready", count=3, timeout=SLOW_START_MS / 1000 + 15)
    wait_until(
        lambda: slot1_socket not in socket_inodes(pids[0]),
        WAIT_S,
        "worker 0 to let slot 1's socket go",
    )
    assert not [line for line in m.lines("web") if "app got message" in str(line)]


def test_a_slot_is_covered_once_another_worker_is_ready(
    tmp_path: Path, run_master, node: str, opened: list[socket.socket]
) -> None:
    """Both workers SIGKILLed together, connections queued on worker 1's socket: nobody
    can cover it then; worker 0's replacement does as soon as it is ready, well before
    worker 1's slow replacement."""
    m, port, pids, slow = start_pair(tmp_path, run_master)
    slow.touch()
    queued = queue_on_stopped(opened, port, pids[1], pids[0])
    os.kill(pids[0], signal.SIGKILL)
    os.kill(pids[1], signal.SIGKILL)
    covered = answers(queued, time.monotonic() + COVER_DEADLINE_S)
    assert len(covered) == len(queued), f"{len(queued) - len(covered)} left waiting"
    ready = m.events("worker_ready", instance=0)
    assert len(ready) == 2
    assert set(covered.values()) == {ready[1]["pid"]}
    assert not m.events("worker_ready", instance=1)[1:]  # still starting: the cover served


def test_a_covering_worker_survives_the_socket_being_closed(
    tmp_path: Path, run_master, node: str, opened: list[socket.socket]
) -> None:
    """Scaled down to 1 while worker 0 covers slot 1: the master closes slot 1's socket,
    and worker 0 lets it go and keeps serving."""
    m, port, pids, slow = start_pair(tmp_path, run_master)
    slot1_socket = os.readlink(f"/proc/{pids[1]}/fd/3")
    slow.touch()
    os.kill(pids[1], signal.SIGKILL)
    m.wait_event("worker_exited", instance=1)
    wait_until(
        lambda: slot1_socket in socket_inodes(pids[0]), WAIT_S, "worker 0 never covered slot 1"
    )
    scaled = control(tmp_path / "c.sock", "scale", "web", "1")
    assert scaled.returncode == 0, scaled.stderr
    wait_until(
        lambda: slot1_socket not in socket_inodes(pids[0]),
        WAIT_S,
        "worker 0 to let the closed socket go",
    )
    cpu = psutil.Process(pids[0]).cpu_times()
    time.sleep(1.0)
    spent = sum(psutil.Process(pids[0]).cpu_times()[:2]) - sum(cpu[:2])
    assert spent < 0.2, f"worker 0 spent {spent:.2f} s of CPU in 1 s idle (an accept loop?)"
    for _ in range(10):
        client = request(port)
        opened.append(client)
        assert answers([client], time.monotonic() + 3) != {}
        client.close()
    assert pid_alive(pids[0])
    assert not m.events("worker_exited", instance=0)


def request(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.sendall(REQUEST)
    return client


def test_an_apps_own_close_waits_for_the_connections_it_covers(
    tmp_path: Path, run_master, node: str, opened: list[socket.socket]
) -> None:
    """Worker 0 covers slow requests queued on killed worker 1's socket and is then sent
    SIGINT: the app's own `server.close(() => process.exit(0))` waits for them too, as
    for its own connections, so every one is answered."""
    m, port, pids, slow = start_pair(tmp_path, run_master, OWN_STOP="1")
    slow.touch()
    queued = queue_on_stopped(opened, port, pids[1], pids[0], path="/slow")
    os.kill(pids[1], signal.SIGKILL)
    wait_until(lambda: bool(m.events("worker_exited", instance=1)), WAIT_S, "worker 1's exit")
    time.sleep(0.3)  # worker 0 has accepted the covered requests; each takes 1 s
    os.kill(pids[0], signal.SIGINT)
    covered = answers(queued, time.monotonic() + COVER_DEADLINE_S + 1)
    assert len(covered) == len(queued), f"{len(queued) - len(covered)} cut"
    assert set(covered.values()) == {pids[0]}
    (exited,) = m.wait_event("worker_exited", instance=0)
    assert exited["code"] == 0

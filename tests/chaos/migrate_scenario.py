"""One run for test_migrate_req.py, inside a network namespace of its own (`unshare --net`).

    python -m tests.chaos.migrate_scenario 0|1

Brings the namespace's loopback up, sets its `net.ipv4.tcp_migrate_req` to the argument,
and starts a master with two reuseport instances: instance 0 never accepts (its socket
queues whatever the kernel gives it), instance 1 answers. Clients connect until some are
stuck in instance 0's queue; then instance 0's worker is SIGKILLed (its next worker comes
only after `restart_delay`, and would not accept either). Prints one JSON line:
`{"stuck": N, "answered_after_kill": M}`, where M counts the stuck clients answered within
ANSWER_S of the kill.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from runtime.proc.sockets import MIGRATE_REQ_SYSCTL
from tests.chaos.load import loopback_up
from tests.integration.conftest import Master, free_port, write_ecosystem

CLIENTS = 24
ANSWER_S = 2.0
APP = """
import os, socket, time
sock = socket.socket(fileno=3)
if os.environ["RUNTIME_INSTANCE"] == "0":
    time.sleep(600)  # holds its socket, never accepts
while True:
    conn, _ = sock.accept()
    conn.recv(1024)
    conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n1\\n")
    conn.close()
"""


def listener_inode(pid: int) -> str:
    """The inode of the listening socket `pid` holds as fd 3 (its reuseport socket)."""
    return os.readlink(f"/proc/{pid}/fd/3").removeprefix("socket:[").removesuffix("]")


def queued_on(inode: str) -> int:
    """Connections waiting in the accept queue of the listener with this inode."""
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[9] == inode and fields[3] == "0A":  # LISTEN: rx is the accept queue
                return int(fields[4].split(":")[1], 16)
    return 0


def main(migrate: str) -> int:
    loopback_up()
    Path(MIGRATE_REQ_SYSCTL).write_text(migrate)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="migrate-") as work:
        return run(port, Path(work))


def run(port: int, work: Path) -> int:
    app = {
        "name": "web",
        "script": sys.executable,
        "args": ["-c", APP],
        "interpreter": "none",
        "exec_mode": "cluster",
        "instances": 2,
        "listen": [f"127.0.0.1:{port}"],
        "socket_sharing": "reuseport",
        "min_uptime": 200,
        "restart_delay": 30000,
    }
    master = Master([str(write_ecosystem(work / "eco.json", [app]))], work)
    try:
        master.wait_event("worker_ready", count=2, timeout=15)
        pid0 = master.events("worker_started", instance=0)[-1]["pid"]
        inode0 = listener_inode(pid0)
        clients: list[socket.socket] = []
        deadline = time.monotonic() + 10
        # instance 0's own queue: instance 1's may hold a few too while its Python starts
        while queued_on(inode0) < 3 and len(clients) < CLIENTS and time.monotonic() < deadline:
            client = socket.create_connection(("127.0.0.1", port), timeout=5)
            client.sendall(b"GET / HTTP/1.0\r\n\r\n")
            clients.append(client)
            time.sleep(0.01)
        # Instance 1 answers its own (however slow the host): until then a client of its
        # would count as stuck, and be answered after the kill even without migrate_req.
        deadline = time.monotonic() + 10
        while (
            sum(not _answered(c, 0.0) for c in clients) > queued_on(inode0)
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        stuck = [c for c in clients if not _answered(c, 0.0)]
        os.kill(pid0, signal.SIGKILL)
        master.wait_event("worker_exited", instance=0, timeout=5)
        deadline = time.monotonic() + ANSWER_S
        answered = sum(_answered(c, deadline - time.monotonic()) for c in stuck)
        print(json.dumps({"stuck": len(stuck), "answered_after_kill": answered}))
        for client in clients:
            client.close()
        return 0
    finally:
        master.stop()


def _answered(client: socket.socket, timeout_s: float) -> bool:
    """Whether an answer arrives within `timeout_s` (0 or less: is already there)."""
    client.settimeout(max(timeout_s, 0.001))
    try:
        return client.recv(64, socket.MSG_PEEK).startswith(b"HTTP/1.0 200")
    except OSError:  # a timeout, or reset
        return False


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

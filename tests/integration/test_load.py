"""Load signals a real master reads from its own listening sockets (issue #15), checked
against the kernel's own view, and autoscaling on them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.integration.conftest import ROOT, free_port
from tests.integration.test_cluster import cluster_app, wait_serving, write


def ss_recv_q(port: int) -> int:
    """Recv-Q of the listening sockets on `port`, summed, as `ss -ltn` shows it."""
    out = subprocess.run(
        ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return sum(int(line.split()[1]) for line in out.splitlines() if line.strip())


def metrics(web_port: int) -> dict[str, float]:
    """`/metrics` as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def backlog_total(values: dict[str, float], app: str) -> float:
    return sum(
        v
        for k, v in values.items()
        if k.startswith("runtime_listen_backlog{") and f'app="{app}"' in k
    )


def test_backlog_matches_the_kernels_view(tmp_path: Path, run_master) -> None:
    """With the workers stopped from accepting (SIGSTOP), N connections wait in the queues:
    /metrics' runtime_listen_backlog says N, as `ss -ltn` Recv-Q does, and the peak too;
    /status and SIGUSR1's status events say the same."""
    port, web = free_port(), free_port()
    m = run_master(
        str(write(tmp_path / "eco.json", [cluster_app(port, "reuseport")])), "--web", str(web)
    )
    pids = [r["pid"] for r in m.wait_event("worker_ready", count=2)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    clients = []
    try:
        for _ in range(12):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            values = metrics(web)
            if backlog_total(values, "web") == 12:
                break
            time.sleep(0.2)
        assert ss_recv_q(port) == 12
        assert backlog_total(values, "web") == 12
        peaks = sum(v for k, v in values.items() if k.startswith("runtime_listen_backlog_peak{"))
        assert peaks >= 12
        assert values['runtime_app_saturation{app="web"}'] > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/status", timeout=5) as reply:
            (status,) = json.loads(reply.read())["apps"]
        assert sum(q["backlog"] for q in status["load"]["queues"]) == 12
        assert status["load"]["saturation"] > 0
        assert status["autoscale"] is None
        m.signal(signal.SIGUSR1)  # the same queues in the logs: one status event per slot
        records = m.wait_event("status", count=2)
        assert sum(r["backlog"] for r in records) == 12, records
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        for c in clients:
            c.close()


def test_list_and_show_report_the_load(tmp_path: Path, run_master) -> None:
    """`list --json` rows carry backlog and connections; `show --json` the app's queues."""
    port, ctl = free_port(), tmp_path / "c.sock"
    m = run_master(
        str(write(tmp_path / "eco.json", [cluster_app(port, "reuseport")])), "--control", str(ctl)
    )
    m.wait_event("worker_ready", count=2)
    wait_serving(port)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def verb(*args: str) -> object:
        proc = subprocess.run(
            [sys.executable, "-m", "runtime", *args, "--control", str(ctl), "--json"],
            capture_output=True, text=True, timeout=30, env=env, check=True,
        )  # fmt: skip
        return json.loads(proc.stdout)

    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        held.recv(1024)  # keep-alive: the worker holds this connection now
        rows = verb("list")
        assert isinstance(rows, list)
        assert {row["backlog"] for row in rows} == {0}
        assert sum(row["connections"] or 0 for row in rows) == 1
        show = verb("show", "web")
        assert isinstance(show, dict)
        assert {q["slot"] for q in show["load"]["queues"]} == {0, 1}
        assert show["load"]["saturation"] == 0
    finally:
        held.close()


def test_a_saturated_app_scales_up_within_its_range(tmp_path: Path, run_master) -> None:
    """`instances: {min: 1, max: 2}`: with its only worker not accepting, connections wait,
    the app is saturated, and the autoscaler starts a second worker (logged with why)."""
    port = free_port()
    app = cluster_app(port, "reuseport", instances={"min": 1, "max": 2})
    m = run_master(str(write(tmp_path / "eco.json", [app])))
    first = m.wait_event("worker_ready")[0]["pid"]
    os.kill(first, signal.SIGSTOP)
    clients = []
    try:
        for _ in range(5):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        scaled = m.wait_event("autoscaled", timeout=20)[0]
        assert (scaled["instances"], scaled["was"]) == (2, 1)
        assert "connections waiting" in scaled["reason"]
        m.wait_event("worker_ready", count=2, timeout=20)
    finally:
        os.kill(first, signal.SIGCONT)
        for c in clients:
            c.close()

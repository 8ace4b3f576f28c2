"""Cluster mode: pre-bound sockets shared with real HTTP workers, reloads and scaling."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, free_port, pid_alive

SERVER = str(ROOT / "tests" / "apps" / "http_server.py")


def cluster_app(port: int, sharing: str, instances: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "name": "web",
        "script": SERVER,
        "exec_mode": "cluster",
        "instances": instances,
        "listen": [f"127.0.0.1:{port}"],
        "socket_sharing": sharing,
        "wait_ready": True,
        "listen_timeout": 5000,
        "kill_timeout": 10000,
        **extra,
    }


def write(path: Path, apps: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"apps": apps}))
    return path


def get(port: int, timeout: float = 5.0, close: bool = True) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Connection": "close"} if close else {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


class Load:
    """Sequential requests from a few threads until stopped; counts answers and failures."""

    def __init__(self, port: int, threads: int = 4, max_requests: int = 200_000) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.answers: Counter[str] = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._budget = max_requests
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if self._budget <= 0:
                    return
                self._budget -= 1
            try:
                status, body = get(self.port)
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(f"{time.time():.3f} {exc!r}")
                continue
            with self._lock:
                if status == 200:
                    self.ok += 1
                    self.answers[body.split()[0]] += 1
                else:
                    self.failures.append(f"status {status}")


def wait_serving(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get(port, timeout=1)[0] == 200:
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"nothing served on port {port}")


@pytest.mark.parametrize("sharing", ["shared", "reuseport"])
def test_requests_reach_every_worker(tmp_path: Path, run_master, sharing: str) -> None:
    """Each worker answers with its instance number, and requests reach all of them."""
    port = free_port()
    m = run_master(str(write(tmp_path / "eco.json", [cluster_app(port, sharing, instances=2)])))
    m.wait_event("worker_ready", count=2)
    seen: Counter[str] = Counter()
    deadline = time.monotonic() + 10
    with Load(port, threads=8, max_requests=4000) as load:
        while time.monotonic() < deadline and len(load.answers) < 2:
            time.sleep(0.05)
        seen = load.answers.copy()
    assert set(seen) == {"0", "1"}, seen
    assert load.failures == []


@pytest.mark.parametrize("sharing", ["shared", "reuseport"])
def test_reload_under_load_fails_no_request(tmp_path: Path, run_master, sharing: str) -> None:
    """Two SIGHUP reloads under continuous requests: every request succeeds, every pid changes."""
    port = free_port()
    m = run_master(str(write(tmp_path / "eco.json", [cluster_app(port, sharing)])))
    old = {r["pid"] for r in m.wait_event("worker_ready", count=2)}
    with Load(port) as load:
        time.sleep(0.3)
        m.signal(signal.SIGHUP)
        m.wait_event("reload_done", timeout=20)
        m.signal(signal.SIGHUP)
        m.wait_event("reload_done", count=2, timeout=20)
        time.sleep(0.3)
    events = [
        (r["timestamp"], r["event"], r.get("instance"), r.get("pid"))
        for r in m.records
        if "event" in r
    ]
    assert load.failures == [], events
    assert load.ok > 50
    current = {r["pid"] for r in m.events("worker_ready")} - old
    assert len(current) == 4
    assert not any(pid_alive(p) for p in old)


def test_broken_replacement_keeps_the_old_worker(tmp_path: Path, run_master) -> None:
    """A release that dies at boot is rolled back: reload_failed, the old workers keep serving."""
    port = free_port()
    eco = tmp_path / "eco.json"
    write(eco, [cluster_app(port, "shared")])
    m = run_master(str(eco))
    old = {r["pid"] for r in m.wait_event("worker_ready", count=2)}
    write(eco, [cluster_app(port, "shared", env={"BROKEN": "1"})])
    with Load(port) as load:
        m.signal(signal.SIGHUP)
        failed = m.wait_event("reload_failed", timeout=20)[0]
        time.sleep(0.3)
    assert failed["slot"] == 0
    assert load.failures == []
    assert all(pid_alive(p) for p in old)
    assert {get(port)[1].split()[1] for _ in range(20)} <= {str(p) for p in old}


def test_slow_replacement_never_ready_is_killed(tmp_path: Path, run_master) -> None:
    """A replacement that never becomes ready within listen_timeout is killed; the old one serves."""
    port = free_port()
    eco = tmp_path / "eco.json"
    write(eco, [cluster_app(port, "shared", instances=1)])
    m = run_master(str(eco))
    old = m.wait_event("worker_ready")[0]["pid"]
    write(
        eco,
        [cluster_app(port, "shared", instances=1, listen_timeout=500, env={"BOOT_DELAY": "30"})],
    )
    m.signal(signal.SIGHUP)
    failed = m.wait_event("reload_failed", timeout=15)[0]
    assert "listen_timeout" in failed["reason"]
    assert pid_alive(old)
    assert get(port)[1].split()[1] == str(old)


def test_scale_up_and_down_under_load(tmp_path: Path, run_master) -> None:
    """SIGTTIN adds an instance and SIGTTOU removes the highest, with no failed request."""
    port = free_port()
    m = run_master(str(write(tmp_path / "eco.json", [cluster_app(port, "shared", instances=1)])))
    m.wait_event("worker_ready")
    with Load(port) as load:
        m.signal(signal.SIGTTIN)
        m.wait_for(lambda: len(m.events("worker_ready")) >= 2)
        m.signal(signal.SIGTTIN)
        m.wait_for(lambda: len(m.events("worker_ready")) >= 3)
        m.signal(signal.SIGTTOU)
        m.wait_for(lambda: any(r.get("instance") == 2 for r in m.events("worker_exited")))
        time.sleep(0.3)
    assert load.failures == []
    scaled = m.events("scaled")
    assert [r["instances"] for r in scaled] == [2, 3, 2]
    assert scaled[-1]["stopped"] == [2]


def test_connection_waits_while_no_worker_is_alive(tmp_path: Path, run_master) -> None:
    """A connection made while the only worker is down is served once it is back, not refused."""
    port = free_port()
    app = cluster_app(port, "shared", instances=1, restart_delay=800, min_uptime=100)
    m = run_master(str(write(tmp_path / "eco.json", [app])))
    pid = m.wait_event("worker_ready")[0]["pid"]
    os.kill(pid, signal.SIGKILL)
    m.wait_event("restart_scheduled")
    t0 = time.monotonic()
    status, body = get(port, timeout=10)
    assert status == 200
    assert body.split()[1] != str(pid)
    assert time.monotonic() - t0 > 0.3


def test_port_in_use_is_a_config_error(tmp_path: Path) -> None:
    """A port already bound elsewhere: one line naming the address, exit 78, nothing started."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        eco = write(tmp_path / "eco.json", [cluster_app(port, "shared")])
        proc = subprocess.run(
            [sys.executable, "-m", "runtime", str(eco), "--log-format", "json"],
            capture_output=True,
            text=True,
            timeout=20,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
    assert proc.returncode == 78
    assert f"127.0.0.1:{port}" in proc.stderr
    assert "in use" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "worker_started" not in proc.stdout


def test_a_second_runtime_on_a_reuseport_port_is_refused(tmp_path: Path, run_master) -> None:
    """The kernel would let a second runtime's reuseport sockets join the first one's group
    (same uid) and its steering program would then decide for both: it exits 78 with one
    line instead, and the first runtime's workers go on answering every request."""
    port = free_port()
    first = run_master(str(write(tmp_path / "first.json", [cluster_app(port, "reuseport")])))
    first.wait_event("worker_ready", count=2)
    second_dir = tmp_path / "second"
    second_dir.mkdir()
    eco = write(second_dir / "eco.json", [cluster_app(port, "reuseport")])
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", str(eco), "--control", str(second_dir / "c.sock")],
        capture_output=True,
        text=True,
        timeout=20,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 78, proc.stderr
    assert proc.stderr.splitlines() == [
        f"runtime: {eco}: web.listen: 127.0.0.1:{port}: address already in use"
    ]
    assert "worker_started" not in proc.stdout
    pids = {str(r["pid"]) for r in first.events("worker_ready")}
    answers = Counter(get(port)[1].split()[1] for _ in range(40))
    assert set(answers) == pids, answers  # both of the first runtime's workers

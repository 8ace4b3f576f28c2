"""`--web`: /health, /status, /metrics, the dashboard and its token, on a real master."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import ROOT, Master, free_port, py, write_ecosystem

TOKEN = "t0ps3cret-token"

TICKER = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.3)"

# READY=1 on NOTIFY_SOCKET once the file named in argv[1] exists
READY_WHEN_FILE = """
import os, socket, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.connect(os.environ["NOTIFY_SOCKET"])
s.send(b"READY=1")
while True:
    time.sleep(1)
"""


def get(
    port: int, path: str, token: str | None = None, timeout: float = 5.0
) -> tuple[int, dict[str, str], bytes]:
    """One GET on loopback: status, lower-cased headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_http(
    port: int,
    path: str,
    predicate: Callable[[int, Any], bool],
    timeout: float = 20.0,
    token: str | None = None,
) -> tuple[int, Any]:
    """Poll `path` until `predicate(status, json_body)` holds; fail with the last answer."""
    deadline = time.monotonic() + timeout
    last: tuple[int, Any] = (0, None)
    while time.monotonic() < deadline:
        try:
            code, _, body = get(port, path, token)
            last = (code, json.loads(body) if body else None)
            if predicate(*last):
                return last
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    pytest.fail(f"timed out waiting on {path}: last answer {last}")


def start(
    run_master: Callable[..., Master], tmp_path: Path, apps: list[dict[str, Any]], *extra: str
) -> tuple[Master, int]:
    port = free_port()
    eco = write_ecosystem(tmp_path / "eco.json", apps)
    master = run_master(
        str(eco), "--web", f"127.0.0.1:{port}", "--control", str(tmp_path / "ctl.sock"), *extra
    )
    master.wait_event("web_started")
    return master, port


def test_health_is_503_while_starting_then_200_once_online(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """/health answers 503 `starting` while a wait_ready worker has not sent READY, then 200."""
    flag = tmp_path / "go"
    app = {
        "name": "slow",
        **py(READY_WHEN_FILE),
        "wait_ready": True,
        "listen_timeout": 30000,
    }
    app["args"] = [*app["args"], str(flag)]
    master, port = start(run_master, tmp_path, [app])
    code, body = wait_http(port, "/health", lambda c, b: b is not None)
    assert (code, body) == (503, {"status": "starting", "apps": {"slow": "starting"}})
    flag.touch()
    master.wait_event("worker_ready", app="slow")
    assert wait_http(port, "/health", lambda c, b: c == 200) == (200, {"status": "ok"})


def test_health_is_503_while_draining_after_sigterm(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """With --shutdown-delay, SIGTERM turns /health to 503 `draining` while the rest still serves."""
    master, port = start(
        run_master, tmp_path, [{"name": "web", **py(TICKER)}], "--shutdown-delay", "2"
    )
    wait_http(port, "/health", lambda c, b: c == 200)
    master.signal(signal.SIGTERM)
    master.wait_event("draining")
    code, _, body = get(port, "/health")
    assert (code, json.loads(body)) == (503, {"status": "draining"})
    code, _, body = get(port, "/status")
    status = json.loads(body)
    assert code == 200
    assert status["runtime"]["draining"] is True
    assert [p["status"] for p in status["processes"]] == ["online"]
    assert master.wait_exit(15) == 0


def test_health_is_503_with_an_errored_app(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """An app that crashed past max_restarts makes /health 503 `errored`, naming the app."""
    apps = [
        {"name": "good", **py(TICKER)},
        {"name": "bad", **py("raise SystemExit(3)"), "max_restarts": 1, "restart_delay": 10},
    ]
    master, port = start(run_master, tmp_path, apps)
    master.wait_event("worker_errored", app="bad")
    code, body = wait_http(port, "/health", lambda c, b: b and b.get("status") == "errored")
    assert code == 503
    assert body["apps"]["bad"] == "errored"
    assert "good" not in body["apps"] or body["apps"]["good"] == "starting"


def test_status_has_the_rows_of_list_json(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """/status carries the same process rows as `list --json`, plus the runtime itself."""
    apps = [
        {"name": "web", **py(TICKER), "instances": 2},
        {"name": "db", **py(TICKER), "env": {"DB_PASSWORD": "hunter2"}},
    ]
    master, port = start(run_master, tmp_path, apps)
    wait_http(port, "/health", lambda c, b: c == 200)
    code, headers, body = get(port, "/status")
    status = json.loads(body)
    assert code == 200
    assert headers["content-type"] == "application/json"
    assert status["runtime"]["pid"] == master.pid
    assert status["runtime"]["health"] == "ok"
    assert [(a["name"], a["instances"]) for a in status["apps"]] == [("web", 2), ("db", 1)]
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "list",
            "--json",
            "--control",
            str(tmp_path / "ctl.sock"),
        ],
        capture_output=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=20,
    )
    rows = json.loads(listed.stdout)
    assert [p.keys() for p in status["processes"]] == [r.keys() for r in rows]
    stable = ("id", "name", "mode", "instance", "pid", "status", "ready", "restarts")
    assert [[p[k] for k in stable] for p in status["processes"]] == [
        [r[k] for k in stable] for r in rows
    ]
    assert b"hunter2" not in body


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def test_metrics_parse_with_one_sample_per_worker(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """/metrics is valid Prometheus text with one sample per worker, and starts no thread."""
    apps = [
        {"name": "web", **py(TICKER), "instances": 2},
        {"name": "job", **py(TICKER)},
    ]
    master, port = start(run_master, tmp_path, apps)
    wait_http(port, "/health", lambda c, b: c == 200)
    threads_before = len(os.listdir(f"/proc/{master.pid}/task"))
    get(port, "/metrics")
    time.sleep(0.6)  # a second psutil sample, so CPU percent has an interval
    code, headers, body = get(port, "/metrics")
    assert code == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    found = families(body.decode())
    workers = {("web", "0"), ("web", "1"), ("job", "0")}
    for name in (
        "runtime_worker_cpu_percent",
        "runtime_worker_memory_bytes",
        "runtime_worker_restarts",
        "runtime_worker_uptime_seconds",
        "runtime_worker_up",
        "runtime_worker_ready",
        "runtime_worker_status",
        "runtime_worker_exits",
    ):
        samples = found[name].samples
        assert sorted((s.labels["app"], s.labels["instance"]) for s in samples) == sorted(workers)
    assert all(s.value > 0 for s in found["runtime_worker_memory_bytes"].samples)
    assert {s.labels["status"] for s in found["runtime_worker_status"].samples} == {"online"}
    assert found["runtime_info"].samples[0].labels["pid"] == str(master.pid)
    assert len(os.listdir(f"/proc/{master.pid}/task")) == threads_before


def test_token_protects_everything_but_health(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """With --web-token, every route but /health answers 401 unless given the bearer token."""
    master, port = start(
        run_master, tmp_path, [{"name": "web", **py(TICKER)}], "--web-token", TOKEN
    )
    wait_http(port, "/health", lambda c, b: c == 200)
    for path in ("/", "/status", "/metrics", "/events"):
        code, headers, _ = get(port, path)
        assert code == 401, path
        assert headers["www-authenticate"].startswith("Bearer")
        assert get(port, path, token="wrong")[0] == 401, path
    for path in ("/", "/status", "/metrics"):
        assert get(port, path, token=TOKEN)[0] == 200, path
        assert get(port, f"{path}?token={TOKEN}")[0] == 200, path
    assert TOKEN.encode() not in b"".join(master.raw)


def test_dashboard_page_is_self_contained_and_events_stream(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """The page loads nothing external (CSP `default-src 'none'`), and /events sends status and logs."""
    master, port = start(run_master, tmp_path, [{"name": "web", **py(TICKER)}])
    master.wait_for(lambda: master.lines("web"), what="a worker line")
    code, headers, page = get(port, "/")
    assert code == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert b"src=" not in page
    assert b"https://" not in page
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        deadline = time.monotonic() + 10
        while (b"event: status" not in data or b'"message":"tick"' not in data) and (
            time.monotonic() < deadline
        ):
            data += sock.recv(65536)
    assert data.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream")
    assert b"event: status" in data
    assert b'"message":"tick"' in data


def test_bad_web_spec_and_port_in_use_are_one_line_errors(tmp_path: Path) -> None:
    """A bad --web value exits 78 and a port in use exits 1, each with one line on stderr."""
    eco = write_ecosystem(tmp_path / "eco.json", [{"name": "web", **py(TICKER)}])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "runtime", str(eco), "--control", str(tmp_path / "c.sock")]
    bad = subprocess.run(
        [*base, "--web", "localhost:http"], capture_output=True, env=env, timeout=20
    )
    assert bad.returncode == 78
    assert bad.stderr.decode() == "runtime: --web: expected [HOST:]PORT, got 'localhost:http'\n"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        busy = subprocess.run(
            [*base, "--web", f"127.0.0.1:{port}"], capture_output=True, env=env, timeout=20
        )
    assert busy.returncode == 1
    assert busy.stderr.decode() == f"runtime: --web 127.0.0.1:{port}: Address already in use\n"


def test_late_ready_still_turns_health_ok(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """A READY=1 that comes after listen_timeout still makes the worker online and /health 200."""
    flag = tmp_path / "go"
    app = {"name": "late", **py(READY_WHEN_FILE), "wait_ready": True, "listen_timeout": 300}
    app["args"] = [*app["args"], str(flag)]
    master, port = start(run_master, tmp_path, [app])
    master.wait_event("ready_timeout", app="late")
    assert get(port, "/health")[0] == 503
    flag.touch()
    master.wait_event("worker_ready", app="late")
    assert wait_http(port, "/health", lambda c, b: c == 200) == (200, {"status": "ok"})


def test_an_app_stopped_by_hand_leaves_health_ok(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """`stop NAME` through the control API is deliberate: /health stays 200 for the rest."""
    apps = [{"name": "web", **py(TICKER)}, {"name": "jobs", **py(TICKER)}]
    _master, port = start(run_master, tmp_path, apps)
    wait_http(port, "/health", lambda c, b: c == 200)
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "stop", "jobs", "--control", str(tmp_path / "ctl.sock")],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 0, proc.stderr
    assert get(port, "/health")[0] == 200

"""`POST /api/apps/<name>/<verb>` and /status's `host`, over plain HTTP on a real master."""

from __future__ import annotations

import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.integration.conftest import Master, free_port, py, write_ecosystem

TOKEN = "api-t0ken"
TICKER = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.3)"
APPS = [
    {"name": "web", **py(TICKER), "exec_mode": "fork", "min_uptime": 300},
    {"name": "other", **py(TICKER), "exec_mode": "fork"},
]


def request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], Any]:
    """One request on loopback: status, lower-cased headers, the JSON body (or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(raw or "null")
    finally:
        conn.close()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def start(run_master: Callable[..., Master], tmp_path: Path, *extra: str) -> tuple[Master, int]:
    port = free_port()
    eco = write_ecosystem(tmp_path / "eco.json", APPS)
    master = run_master(
        str(eco), "--web", f"127.0.0.1:{port}", "--control", str(tmp_path / "c.sock"), *extra
    )
    master.wait_event("worker_ready", app="web")
    master.wait_event("worker_ready", app="other")
    return master, port


def web_rows(port: int, headers: dict[str, str]) -> list[dict[str, Any]]:
    code, _, snap = request(port, "GET", "/status", headers)
    assert code == 200
    return [p for p in snap["processes"] if p["name"] == "web"]


def wait_rows(
    port: int, headers: dict[str, str], predicate: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 20
    rows = web_rows(port, headers)
    while not predicate(rows):
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
        rows = web_rows(port, headers)
    return rows


def online(count: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda rows: len(rows) == count and all(r["status"] == "online" for r in rows)


def test_api_needs_the_token_and_the_dashboards_origin(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """Without the bearer token 401 (a `?token=` in the URL is not enough), from a foreign
    Origin 403 even with it; the dashboard's own origin with the token is served."""
    _master, port = start(run_master, tmp_path, "--web-token", TOKEN)
    pid = web_rows(port, bearer())[0]["pid"]
    path = "/api/apps/web/restart"
    code, headers, body = request(port, "POST", path)
    assert (code, body) == (401, {"ok": False, "error": "unauthorized"})
    assert headers["www-authenticate"].startswith("Bearer")
    assert request(port, "POST", f"{path}?token={TOKEN}")[0] == 401
    assert request(port, "POST", path, bearer("wrong"))[0] == 401
    for origin in ("http://evil.example", f"http://127.0.0.1:{port + 1}", "null"):
        code, _, body = request(port, "POST", path, {**bearer(), "Origin": origin})
        assert code == 403, origin
        assert body["ok"] is False
        assert "another origin" in body["error"]
    assert "set-cookie" not in headers
    assert web_rows(port, bearer())[0]["pid"] == pid  # nothing was restarted so far
    own = {**bearer(), "Origin": f"http://127.0.0.1:{port}"}
    code, headers, body = request(port, "POST", path, own)
    assert code == 200, body
    assert headers["content-type"] == "application/json"
    assert "set-cookie" not in headers
    assert body["ok"] is True
    assert (body["app"], body["verb"]) == ("web", "restart")
    assert [p["name"] for p in body["processes"]] == ["web"]
    assert body["processes"][0]["pid"] != pid
    assert body["processes"][0]["restarts"] == 1


def test_api_only_post_changes_anything_and_errors_are_one_json_object(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """GET and HEAD on /api are 405 with Allow: POST; unknown apps and verbs 404, a bad `n`
    400, an over-long body 413, a chunked one 400: each one JSON object, nothing changed."""
    _master, port = start(run_master, tmp_path)
    pid = web_rows(port, {})[0]["pid"]
    for method in ("GET", "HEAD", "PUT", "DELETE"):
        code, headers, body = request(port, method, "/api/apps/web/restart")
        assert code == 405, method
        assert headers["allow"] == "POST"
        if method != "HEAD":
            assert body == {"ok": False, "error": "method not allowed: the API takes POST"}
    cases = [
        ("/api/apps/nope/restart", 404, "unknown app 'nope'"),
        ("/api/apps/web/explode", 404, "unknown verb 'explode'"),
        ("/api/apps/web", 404, "not found"),
        ("/api/nothing", 404, "not found"),
        ("/api/apps/web/scale", 400, "scale needs ?n="),
        ("/api/apps/web/scale?n=lots", 400, "expected N, +N or -N"),
        ("/api/apps/web/scale?n=1.5", 400, "expected N, +N or -N"),
        ("/api/apps/web/scale?n=%2B100000", 400, "expected at most"),
    ]
    for path, want, message in cases:
        code, _, body = request(port, "POST", path)
        assert code == want, path
        assert set(body) == {"ok", "error"}, path
        assert body["ok"] is False
        assert message in body["error"], (path, body)
    code, _, body = request(port, "POST", "/api/apps/web/stop", body=b"x" * 2048)
    assert (code, body) == (413, {"error": "request body over 1024 bytes"})
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/apps/web/stop HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert request(port, "POST", "/status")[0] == 405
    assert [(r["pid"], r["status"]) for r in web_rows(port, {})] == [(pid, "online")]


def test_api_verbs_change_the_app_as_the_control_verbs_do(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """scale with `?n=+1` (a literal plus), `?n=3` and `?n=-1`, stop and start, with a small
    body sent along (read and ignored); /status agrees with each reply."""
    _master, port = start(run_master, tmp_path)
    other = [p for p in request(port, "GET", "/status")[2]["processes"] if p["name"] == "other"]
    code, _, body = request(port, "POST", "/api/apps/web/scale?n=+1", body=b"{}")
    assert code == 200, body
    assert len(body["processes"]) == 2
    wait_rows(port, {}, online(2))
    code, _, body = request(port, "POST", "/api/apps/web/scale?n=3")
    assert (code, len(body["processes"])) == (200, 3)
    wait_rows(port, {}, online(3))
    assert request(port, "POST", "/api/apps/web/scale?n=-1")[0] == 200
    wait_rows(port, {}, online(2))
    code, _, body = request(port, "POST", "/api/apps/web/stop")
    assert code == 200
    assert [p["status"] for p in body["processes"]] == ["stopped", "stopped"]
    assert [r["status"] for r in web_rows(port, {})] == ["stopped", "stopped"]
    assert request(port, "GET", "/health")[:3:2] == (200, {"status": "ok"})  # stopped by hand
    assert request(port, "POST", "/api/apps/web/start")[0] == 200
    wait_rows(port, {}, online(2))
    after = [p for p in request(port, "GET", "/status")[2]["processes"] if p["name"] == "other"]
    assert [p["pid"] for p in after] == [p["pid"] for p in other]


def test_api_without_a_token_refuses_a_rebound_host_name(
    run_master: Callable[..., Master], tmp_path: Path
) -> None:
    """On loopback without a token, a Host that is not a loopback name is refused (DNS
    rebinding), even with a matching Origin; `localhost` is served."""
    _master, port = start(run_master, tmp_path)
    pid = web_rows(port, {})[0]["pid"]
    rebound = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    code, _, body = request(port, "POST", "/api/apps/web/restart", rebound)
    assert code == 403
    assert "not this loopback dashboard" in body["error"]
    assert web_rows(port, {})[0]["pid"] == pid
    local = {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}
    assert request(port, "POST", "/api/apps/web/restart", local)[0] == 200


def test_status_has_the_host(run_master: Callable[..., Master], tmp_path: Path) -> None:
    """/status carries the host: CPUs, load, memory, and the runtime, Python and Node
    versions (node's once its `--version` has answered)."""
    _master, port = start(run_master, tmp_path)
    deadline = time.monotonic() + 20
    host = request(port, "GET", "/status")[2]["host"]
    while host["versions"]["node"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
        host = request(port, "GET", "/status")[2]["host"]
    node = shutil.which("node")
    expected_node = (
        subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
        if node
        else "-"
    )
    assert host["versions"]["node"] == expected_node
    assert host["versions"]["python"] == platform.python_version()
    assert host["cpus"] == os.cpu_count()
    assert 1 <= host["cpus_usable"] <= host["cpus"]
    assert len(host["load"]) == 3
    assert 0 < host["memory_available_bytes"] <= host["memory_total_bytes"]
    assert "memory_limit_bytes" in host
    assert "cpu_quota" in host

"""The example app (examples/heroku-app) under a real master, as a user runs it.

`python -m runtime ecosystem.config.yml` in the example's directory with `PORT` set to
a free loopback port and `WEB_CONCURRENCY=2`, its JSON log parsed live, HTTP spoken
to the shared socket the master pre-binds. Every wait has a deadline.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.integration.conftest import ROOT, Master, free_port, pid_alive
from tests.integration.conftest import node as node  # the fixture, re-exported
from tests.integration.conftest import run_master as run_master  # the fixture, re-exported

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "heroku-app"
ECOSYSTEM = "ecosystem.config.yml"
READY_TIMEOUT = 30.0
HTTP_TIMEOUT = 5.0

StartMaster = Callable[..., Master]


def get(port: int, path: str = "/") -> tuple[int, dict[str, Any]]:
    """One GET on a fresh loopback connection; (status, decoded JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def start_example(run_master: StartMaster, tmp_path: Path, *extra: str) -> tuple[Master, int]:
    """The example's ecosystem on a free port with two web instances, ready to serve."""
    port = free_port()
    master = run_master(
        ECOSYSTEM,
        "--control",
        str(tmp_path / "ctl.sock"),
        *extra,
        cwd=EXAMPLE,
        env={"PORT": str(port), "WEB_CONCURRENCY": "2"},
    )
    master.wait_event("worker_ready", count=2, timeout=READY_TIMEOUT, app="web")
    master.wait_event("worker_ready", timeout=READY_TIMEOUT, app="worker")
    return master, port


def serving_pids(port: int, want: int, timeout: float = 10.0) -> set[int]:
    """GET / until `want` answers the caller is waiting for have been seen; the pids that answered."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = get(port)
        assert status == 200, body
        seen.add(body["pid"])
        if want in seen:
            break
    return seen


@pytest.mark.parametrize(
    ("env_name", "message"),
    [
        (None, "hello from runtime"),
        ("prod", "hello from production"),
        ("homolog", "hello from homologation"),
    ],
)
def test_env_context_sets_the_message(
    run_master: StartMaster, tmp_path: Path, env_name: str | None, message: str
) -> None:
    """`--env NAME` merges env_NAME over env: the web answer and the worker heartbeat change."""
    master, port = start_example(run_master, tmp_path, *(["--env", env_name] if env_name else []))
    status, body = get(port)
    assert status == 200
    assert body["message"] == message
    assert body["app"] == "web"
    master.wait_for(
        lambda: [r for r in master.lines("worker") if r.get("message") == "heartbeat"],
        what="a worker heartbeat",
    )
    beats = [r for r in master.lines("worker") if r.get("message") == "heartbeat"]
    assert beats[0]["note"] == message


def test_two_apps_run_under_their_names(run_master: StartMaster, tmp_path: Path) -> None:
    """Both apps of the ecosystem log under their names, web with WEB_CONCURRENCY instances."""
    master, _ = start_example(run_master, tmp_path)
    # Readiness (web: READY=1 on the notify socket; worker: min_uptime) can reach the
    # master before the lines printed first, which come through the workers' pipes.
    master.wait_for(
        lambda: (
            len({r["instance"] for r in master.lines("web")}) >= 2
            and any(r.get("message") == "worker started" for r in master.lines("worker"))
        ),
        what="the first lines of both web workers and of the worker",
    )
    started = master.events("worker_started")
    assert sorted((r["app"], r["instance"]) for r in started) == [
        ("web", 0),
        ("web", 1),
        ("worker", 0),
    ]
    assert {r["instance"] for r in master.lines("web")} == {0, 1}
    assert any(r.get("message") == "listening on fd 3" for r in master.lines("web"))
    assert any(r.get("message") == "worker started" for r in master.lines("worker"))
    master.signal(signal.SIGTERM)
    assert master.wait_exit(15) == 0
    assert not master.events("restart_scheduled")


def test_crash_is_restarted_and_the_new_worker_serves(
    run_master: StartMaster, tmp_path: Path
) -> None:
    """GET /crash ends a web worker with code 1; it is restarted and a new pid answers."""
    master, port = start_example(run_master, tmp_path)
    status, body = get(port, "/crash")
    assert status == 200
    crashed = body["crashing"]
    master.wait_event("worker_exited", pid=crashed, code=1)
    master.wait_event("restart_scheduled", pid=crashed)
    instance = master.events("worker_exited", pid=crashed)[0]["instance"]
    (restarted,) = master.wait_for(
        lambda: [
            r
            for r in master.events("worker_started", app="web", instance=instance)
            if r["restarts"] >= 1
        ],
        what="the crashed instance started again",
    )
    new_pid = restarted["pid"]
    master.wait_event("worker_ready", pid=new_pid, timeout=READY_TIMEOUT)
    assert not pid_alive(crashed)
    seen = serving_pids(port, new_pid)
    assert new_pid in seen
    assert crashed not in seen


def test_leak_is_restarted_at_the_memory_limit(run_master: StartMaster, tmp_path: Path) -> None:
    """GET /leak repeated past max_memory_restart (100M) gets that worker replaced."""
    master, port = start_example(run_master, tmp_path)
    deadline = time.monotonic() + 20
    while not master.events("memory_limit") and time.monotonic() < deadline:
        status, _ = get(port, "/leak?mb=40")
        assert status == 200
        time.sleep(0.2)
    event = master.wait_event("memory_limit", app="web")[
        0
    ]  # both may leak: reuseport spreads /leak
    assert event["limit_bytes"] == 100 * 2**20
    assert event["rss_bytes"] > event["limit_bytes"]
    leaky = event["pid"]
    (replacement,) = master.wait_for(
        lambda: [
            r
            for r in master.events("worker_started", app="web", instance=event["instance"])
            if r["pid"] != leaky
        ],
        what="a replacement for the leaking worker",
    )
    # the old worker is stopped once its replacement is ready (a reload of one slot)
    master.wait_event("worker_exited", pid=leaky, timeout=READY_TIMEOUT)
    assert pid_alive(replacement["pid"])
    assert not master.events("worker_errored")
    status, body = get(port)
    assert status == 200
    assert body["pid"] != leaky


def session_pids(sid: int) -> list[int]:
    """Every live process of session `sid` (the dyno, for a Heroku-style stop)."""
    pids = []
    for proc in psutil.process_iter():
        try:
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                pids.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return pids


@pytest.fixture
def procfile_web(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    """Run the root Procfile's `web:` command as Heroku does, in a session of its own."""
    procs: list[subprocess.Popen[bytes]] = []
    line = next(ln for ln in (ROOT / "Procfile").read_text().splitlines() if ln.startswith("web:"))
    command = line.removeprefix("web:").strip()
    log = (tmp_path / "procfile.log").open("wb")

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        full = dict(os.environ)
        # `python` on PATH is the one with the dependencies, as on a Heroku dyno
        full["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full.get('PATH', '')}"
        full["PYTHONPATH"] = str(ROOT)
        full.update(env)
        proc = subprocess.Popen(
            ["/bin/sh", "-c", command],
            cwd=ROOT,
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        for pid in session_pids(proc.pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
    log.close()


def test_root_procfile_web_serves_on_port(
    procfile_web: Callable[[dict[str, str]], subprocess.Popen[bytes]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """The root Procfile's web line, via /bin/sh -c from the repo root with a random PORT, serves."""
    port = free_port()
    # The default control socket lands in a directory of this test's, clear of parallel
    # runs (short: a Unix socket path has at most 107 bytes)
    xdg = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    request.addfinalizer(lambda: shutil.rmtree(xdg, ignore_errors=True))
    proc = procfile_web({"PORT": str(port), "WEB_CONCURRENCY": "2", "XDG_RUNTIME_DIR": xdg})
    log_path = tmp_path / "procfile.log"
    deadline = time.monotonic() + READY_TIMEOUT
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()
        try:
            status, body = get(port)
        except OSError:
            time.sleep(0.2)
            continue
        assert status == 200
        break
    assert body.get("app") == "web", log_path.read_text()
    assert body["message"] == "hello from runtime"

    # Heroku stops a dyno that has booted: wait until every worker is ready.
    deadline = time.monotonic() + READY_TIMEOUT
    while log_path.read_text().count('"event":"worker_ready"') < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    # Heroku's stop: SIGTERM to every process of the dyno at once, SIGKILL 30 s later.
    pids = session_pids(proc.pid)
    assert len(pids) >= 4  # the master (sh execs it), two web workers, the worker
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while session_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not session_pids(proc.pid), log_path.read_text()
    proc.wait(5)
    log = [json.loads(ln) for ln in log_path.read_text().splitlines()]
    events = [r["event"] for r in log if "event" in r]
    started = [r for r in log if r.get("event") == "worker_started"]
    assert sorted((r["app"], r["instance"]) for r in started) == [
        ("web", 0),
        ("web", 1),
        ("worker", 0),
    ]
    assert "restart_scheduled" not in events
    assert [r["code"] for r in log if r.get("event") == "runtime_exited"] == [0]
    exits = [r for r in log if r.get("event") == "worker_exited"]
    assert all(r["code"] == 0 for r in exits), [
        (r["app"], r["code"], r["signal"], r.get("uptime_s")) for r in exits
    ]


def test_unmodified_node_and_python_apps_run_in_cluster_mode(
    run_master: StartMaster, tmp_path: Path, node: str
) -> None:
    """examples/heroku-app/unmodified as pm2 users write it: both apps serve their port from
    two workers, the node one signals ready itself, and a stop drains it on SIGINT (exit 0)."""
    work = tmp_path / "unmodified"
    shutil.copytree(EXAMPLE / "unmodified", work)
    node_port, py_port = free_port(), free_port()
    eco = work / "ecosystem.config.js"
    eco.write_text(
        eco.read_text()
        .replace("PORT: 3001", f"PORT: {node_port}")
        .replace("PORT: 3002", f"PORT: {py_port}")
    )
    master = run_master("start", str(eco), "--control", str(tmp_path / "ctl.sock"), cwd=work)
    master.wait_event("worker_ready", count=2, timeout=READY_TIMEOUT, app="hello-node")
    master.wait_event("worker_ready", count=2, timeout=READY_TIMEOUT, app="hello-python")
    for port, app in ((node_port, "hello-node"), (py_port, "hello-python")):
        pids = {r["pid"] for r in master.events("worker_started", app=app)}
        seen: set[int] = set()
        deadline = time.monotonic() + 10
        while seen != pids and time.monotonic() < deadline:
            status, body = get(port)
            assert (status, body["app"]) == (200, app)
            seen.add(body["pid"])
        assert seen == pids, f"{app}: answers from {seen}, workers {pids}"
    master.proc.send_signal(signal.SIGTERM)
    assert master.wait_exit(20) == 0  # and the reader has parsed its last lines
    node_exits = master.events("worker_exited", app="hello-node")
    assert [(r["code"], r["signal"]) for r in node_exits] == [(0, None), (0, None)]
    said = [r["message"] for r in master.lines("hello-node")]
    assert said.count("SIGINT: finishing in-flight requests") == 2

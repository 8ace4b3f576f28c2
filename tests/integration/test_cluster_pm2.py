"""Issue #11 with the real master: apps written for pm2 in cluster mode, unmodified.

Unmodified servers (tests/apps/unmodified/) share the master's pre-bound port through the
preloads; pm2's `process.send('ready')`, `'shutdown'` message and SIGINT stop signal; pm2's
mode choice (`instances` without `exec_mode`, `-i N`); a fork-mode reload; the EADDRINUSE
hint for an app the preload cannot reach. Express, Koa and Fastify come from npm (the
`npm_dir` fixture); without node, npm or a Python framework those cases skip.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import (
    ROOT,
    Master,
    Record,
    free_port,
    pid_alive,
    py,
    write_ecosystem,
)
from tests.integration.preload_cluster import SlowRequest
from tests.integration.test_cluster import Load, get

APPS = ROOT / "tests" / "apps" / "unmodified"
PM2_APP = APPS / "pm2_app.js"
SPREAD_REQUESTS = 20
SPREAD_MIN_EACH = 2  # of 20 hashed connections; fewer by chance: p < 1e-4 per batch
START_TIMEOUT_S = 30.0  # node and aiohttp start slowly on a loaded 2-core machine
READY_BOUND_S = 3.0  # "long before listen_timeout" (10 s)
PORT_IN_USE = ("EADDRINUSE", "Address already in use")

StartMaster = Callable[..., Master]

# id: (script in tests/apps/unmodified, what it needs: "node", "npm" or a Python module)
SERVERS = {
    "node-http": ("http_app.js", "node"),
    "express": ("express_app.js", "npm"),
    "koa": ("koa_app.js", "npm"),
    "fastify": ("fastify_app.js", "npm"),
    "http.server": ("http_server_app.py", None),
    "aiohttp": ("aiohttp_app.py", "aiohttp"),
    "flask": ("flask_app.py", "flask"),
}


# --- helpers -----------------------------------------------------------------------


def cluster_app(name: str, script: Path | str, port: int, **extra: Any) -> dict[str, Any]:
    """An app in cluster mode with 2 instances on 127.0.0.1:port, PORT set for the app."""
    app: dict[str, Any] = {
        "name": name,
        "script": str(script),
        "exec_mode": "cluster",
        "instances": 2,
        "listen": [f"127.0.0.1:{port}"],
        "kill_timeout": 10000,
        **extra,
    }
    app["env"] = {"PORT": str(port), **extra.get("env", {})}
    return app


def script_for(request: pytest.FixtureRequest, server: str) -> Path:
    """The server's script, after skipping when what it needs is missing."""
    script, needs = SERVERS[server]
    if needs in ("node", "npm"):
        request.getfixturevalue("node")
    if needs == "node":
        return APPS / script
    if needs == "npm":
        npm_dir: Path = request.getfixturevalue("npm_dir")
        shutil.copy(APPS / script, npm_dir / script)  # node resolves express from here
        return npm_dir / script
    if needs is not None and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} is not installed")
    return APPS / script


def start(
    run_master: StartMaster, tmp_path: Path, apps: list[dict[str, Any]], *args: str, **kw: Any
) -> Master:
    eco = write_ecosystem(tmp_path / "eco.json", apps)
    return run_master(str(eco), "--control", str(tmp_path / "ctl.sock"), *args, **kw)


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A control verb against the master started by `start`; must exit 0."""
    done = subprocess.run(
        [sys.executable, "-m", "runtime", *args, "--control", str(tmp_path / "ctl.sock")],
        capture_output=True,
        text=True,
        timeout=45,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done


def wait_pids(port: int, count: int = 2) -> set[str]:
    """Request until `count` different pids have answered on `port` (bounded)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    pids: set[str] = set()
    while len(pids) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"{len(pids)} of {count} pids answered on port {port}: {pids}")
        try:
            status, body = get(port, timeout=2)
        except (OSError, http.client.HTTPException):
            time.sleep(0.05)
            continue
        if status == 200:
            pids.add(body.strip())
    return pids


def assert_spread(port: int) -> Counter[str]:
    """20 fresh connections reach 2 pids, at least 2 each (one batch retried for chance)."""
    counts: Counter[str] = Counter()
    for _ in range(2):
        counts = Counter(get(port)[1].strip() for _ in range(SPREAD_REQUESTS))
        if len(counts) == 2 and min(counts.values()) >= SPREAD_MIN_EACH:
            return counts
    pytest.fail(f"20 requests did not spread over 2 pids: {dict(counts)}")


def output(master: Master, app: str | None = None) -> str:
    """Every line the app's workers printed, joined."""
    return "\n".join(str(r.get("message", "")) for r in master.lines(app))


def assert_no_port_error(master: Master) -> None:
    text = output(master)
    assert not any(marker in text for marker in PORT_IN_USE), text[-3000:]
    assert master.events("worker_exited") == []


def started_pids(master: Master) -> set[str]:
    return {str(r["pid"]) for r in master.events("worker_started")}


def stamp_s(record: Record) -> float:
    """A record's `timestamp` (ISO UTC, ms) as epoch seconds."""
    return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()


def exit_of(master: Master, pid: int) -> Record:
    return master.wait_event("worker_exited", pid=pid, timeout=20)[0]


def line_of(master: Master, pid: int, text: str) -> Record:
    """The first line worker `pid` printed that contains `text` (waiting for it)."""
    found: Record = master.wait_for(
        lambda: next(
            (r for r in master.lines() if r.get("pid") == pid and text in str(r.get("message"))),
            None,
        ),
        20,
        f"pid {pid} printing {text!r}",
    )
    return found


# --- unmodified servers share the port -----------------------------------------------


@pytest.mark.parametrize("server", list(SERVERS))
def test_unmodified_server_shares_the_port(
    request: pytest.FixtureRequest, tmp_path: Path, run_master: StartMaster, server: str
) -> None:
    """Two cluster instances of an unmodified server both answer, and 20 requests spread over both."""
    script = script_for(request, server)
    port = free_port()
    m = start(run_master, tmp_path, [cluster_app("web", script, port, cwd=str(script.parent))])
    m.wait_event("worker_ready", count=2, timeout=START_TIMEOUT_S)
    assert wait_pids(port) == started_pids(m)
    counts = assert_spread(port)
    assert set(counts) == started_pids(m)
    assert_no_port_error(m)


# --- rolling reload under load -----------------------------------------------------


@pytest.mark.parametrize("how", ["SIGHUP", "reload-verb"])
@pytest.mark.parametrize("server", ["node-http", "http.server"])
def test_rolling_reload_fails_no_request(
    request: pytest.FixtureRequest, tmp_path: Path, run_master: StartMaster, server: str, how: str
) -> None:
    """A rolling reload of an unmodified server under continuous requests fails none of them."""
    script = script_for(request, server)
    port = free_port()
    m = start(run_master, tmp_path, [cluster_app("web", script, port)])
    m.wait_event("worker_ready", count=2, timeout=START_TIMEOUT_S)
    old = started_pids(m)
    wait_pids(port)
    with Load(port) as load:
        time.sleep(0.3)
        if how == "SIGHUP":
            m.signal(signal.SIGHUP)
            m.wait_event("reload_done", timeout=40)
        else:
            cli(tmp_path, "reload", "web")
        time.sleep(0.3)
    assert load.failures == [], load.failures[:5]
    assert load.ok > 20
    new = started_pids(m) - old
    assert len(new) == 2
    assert set(load.answers) & new, "the new workers served nothing"
    assert not any(pid_alive(int(p)) for p in old)
    assert m.events("reload_failed") == []


# --- pm2's readiness and shutdown protocol -------------------------------------------


def test_process_send_ready_is_online_long_before_listen_timeout(
    node: str, tmp_path: Path, run_master: StartMaster
) -> None:
    """With wait_ready and a 10 s listen_timeout, process.send('ready') 1 s in makes a worker online in under 3 s."""
    port = free_port()
    app = cluster_app(
        "web", PM2_APP, port, wait_ready=True, listen_timeout=10000, env={"READY_DELAY_MS": "1000"}
    )
    m = start(run_master, tmp_path, [app])
    ready = m.wait_event("worker_ready", count=2, timeout=READY_BOUND_S + 5)
    started = {r["pid"]: stamp_s(r) for r in m.events("worker_started")}
    waited = {r["pid"]: stamp_s(r) - started[r["pid"]] for r in ready}
    assert all(1.0 <= s < READY_BOUND_S for s in waited.values()), waited
    statuses = [row["status"] for row in json.loads(cli(tmp_path, "list", "--json").stdout)]
    assert statuses == ["online", "online"]
    assert m.events("ready_timeout") == []


def test_a_listening_node_server_is_up_before_min_uptime(
    node: str, tmp_path: Path, run_master: StartMaster
) -> None:
    """Without wait_ready, an unmodified node server counts as up once it listens (pm2's cue),
    not after min_uptime (10 s here)."""
    port = free_port()
    app = cluster_app("web", APPS / SERVERS["node-http"][0], port, min_uptime=10000)
    m = start(run_master, tmp_path, [app])
    ready = m.wait_event("worker_ready", count=2, timeout=9)
    started = {r["pid"]: stamp_s(r) for r in m.events("worker_started")}
    assert all(stamp_s(r) - started[r["pid"]] < 5 for r in ready)


@pytest.mark.parametrize("stop", ["reload", "SIGTERM to the master"])
def test_sigint_only_app_finishes_its_in_flight_request(
    node: str, tmp_path: Path, run_master: StartMaster, stop: str
) -> None:
    """A node app that drains only on SIGINT answers its in-flight slow request when stopped, and exits 0."""
    port = free_port()
    app = cluster_app("web", PM2_APP, port, instances=1, wait_ready=True, env={"SLOW_MS": "2500"})
    m = start(run_master, tmp_path, [app])
    pid = m.wait_event("worker_ready", timeout=START_TIMEOUT_S)[0]["pid"]
    slow = SlowRequest(port)
    line_of(m, pid, "slow request started")
    if stop == "reload":
        m.signal(signal.SIGHUP)
    else:
        m.signal(signal.SIGTERM)
    drained = line_of(m, pid, "got SIGINT")
    assert "draining 1 in-flight" in drained["message"]
    assert slow.wait() == (200, str(pid))
    exited = exit_of(m, pid)
    assert (exited["code"], exited["signal"]) == (0, None)
    if stop == "reload":
        m.wait_event("reload_done", timeout=20)
        assert get(port)[1].strip() != str(pid)
    else:
        assert m.wait_exit(20) == 0


@pytest.mark.parametrize("stop", ["reload", "SIGTERM to the master"])
def test_shutdown_with_message_sends_shutdown_over_ipc(
    node: str, tmp_path: Path, run_master: StartMaster, stop: str
) -> None:
    """With shutdown_with_message, a node worker is stopped by the IPC message 'shutdown' (no signal) and exits 0."""
    port = free_port()
    app = cluster_app("web", PM2_APP, port, instances=1, shutdown_with_message=True)
    m = start(run_master, tmp_path, [app])
    pid = m.wait_event("worker_ready", timeout=START_TIMEOUT_S)[0]["pid"]
    m.signal(signal.SIGHUP if stop == "reload" else signal.SIGTERM)
    line_of(m, pid, "got shutdown message")
    exited = exit_of(m, pid)
    assert (exited["code"], exited["signal"]) == (0, None)
    assert "got SIGINT" not in output(m)
    if stop == "reload":
        m.wait_event("reload_done", timeout=20)
    else:
        assert m.wait_exit(20) == 0


# --- pm2's mode choice -------------------------------------------------------------


def test_instances_without_exec_mode_runs_cluster(
    node: str, tmp_path: Path, run_master: StartMaster
) -> None:
    """`instances: 2` and no exec_mode (nor listen): cluster, both instances serve the app's PORT."""
    port = free_port()
    app = {"name": "web", "script": str(APPS / "http_app.js"), "instances": 2}
    app["env"] = {"PORT": str(port)}
    eco = write_ecosystem(tmp_path / "eco.json", [app])
    check = subprocess.run(
        [sys.executable, "-m", "runtime", "check", str(eco)],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert "exec_mode: cluster (inferred: instances is given, as in pm2)" in check.stdout
    m = start(run_master, tmp_path, [app])
    m.wait_event("worker_ready", count=2, timeout=START_TIMEOUT_S)
    assert wait_pids(port) == started_pids(m)
    assert_spread(port)
    assert_no_port_error(m)


def test_direct_form_i_2_runs_cluster(node: str, tmp_path: Path, run_master: StartMaster) -> None:
    """`python -m runtime http_app.js -i 2` (no -x): cluster on $PORT, both instances serve."""
    port = free_port()
    m = run_master(str(APPS / "http_app.js"), "-i", "2", env={"PORT": str(port)})
    m.wait_event("worker_ready", count=2, timeout=START_TIMEOUT_S)
    assert wait_pids(port) == started_pids(m)
    assert_spread(port)
    assert_no_port_error(m)


def test_direct_form_x_fork_overrides_i(node: str, tmp_path: Path, run_master: StartMaster) -> None:
    """`-i 2 -x fork`: fork copies with no pre-bound socket, so the second one's own bind fails."""
    port = free_port()
    m = run_master(str(APPS / "http_app.js"), "-i", "2", "-x", "fork", env={"PORT": str(port)})
    m.wait_event("worker_exited", timeout=START_TIMEOUT_S)
    assert "EADDRINUSE" in output(m)
    assert len(wait_pids(port, count=1)) == 1
    assert m.events("hint") == []  # the hint is for cluster workers on a pre-bound port


# --- reload in fork mode -----------------------------------------------------------


def test_fork_mode_reload_restarts_with_new_pids(tmp_path: Path, run_master: StartMaster) -> None:
    """`reload NAME` of a fork-mode app without a listener: exit 0, every instance has a new pid."""
    sleeper = "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"
    app = {"name": "jobs", "exec_mode": "fork", "instances": 2, **py(sleeper)}
    m = start(run_master, tmp_path, [app])
    m.wait_event("worker_ready", count=2, timeout=START_TIMEOUT_S)
    before = {row["pid"] for row in json.loads(cli(tmp_path, "list", "--json").stdout)}
    cli(tmp_path, "reload", "jobs")
    done = m.wait_event("reload_done", timeout=20)[0]
    assert done["mode"] == "restart"
    m.wait_event("worker_ready", count=4, timeout=START_TIMEOUT_S)
    after = {row["pid"] for row in json.loads(cli(tmp_path, "list", "--json").stdout)}
    assert len(after) == 2
    assert before.isdisjoint(after)
    assert not any(pid_alive(p) for p in before)
    assert m.events("reload_failed") == []


# --- the EADDRINUSE hint -----------------------------------------------------------


@pytest.mark.parametrize("unreached", ["preload: false", "python -E"])
def test_port_in_use_hint_once_while_crash_looping(
    tmp_path: Path, run_master: StartMaster, unreached: str
) -> None:
    """A cluster app the preload cannot reach dies on EADDRINUSE: one `hint` naming app and port, however often it crashes."""
    port = free_port()
    server = str(APPS / "http_server_app.py")
    extra: dict[str, Any] = {"restart_delay": 100, "max_restarts": 100}
    if unreached == "preload: false":
        extra["preload"] = False
    else:
        extra.update(script=sys.executable, args=["-E", server], interpreter="none")
    app = {**cluster_app("self-binder", server, port), **extra}
    m = start(run_master, tmp_path, [app])
    m.wait_event("worker_exited", count=6, timeout=START_TIMEOUT_S)
    assert "Address already in use" in output(m)
    hints = m.events("hint")
    assert len(hints) == 1, hints
    assert hints[0]["app"] == "self-binder"
    assert hints[0]["ports"] == [port]
    assert "docs/servers.md" in hints[0]["message"]
    assert m.proc.poll() is None


# --- the stop signal ---------------------------------------------------------------


def fork_node_app(name: str, port: int, **extra: Any) -> dict[str, Any]:
    """pm2_app.js in fork mode on its own port (it binds the port itself)."""
    return {"name": name, "script": str(PM2_APP), "env": {"PORT": str(port)}, **extra}


def stop_and_exits(m: Master, names: list[str]) -> dict[str, Record]:
    """SIGTERM the master after every app is ready; each app's worker_exited."""
    ready = {r["app"]: r["pid"] for r in m.wait_event("worker_ready", count=len(names), timeout=30)}
    m.signal(signal.SIGTERM)
    assert m.wait_exit(20) == 0
    return {name: exit_of(m, ready[name]) for name in names}


def test_pm2_kill_signal_env_changes_the_node_stop_signal(
    node: str, tmp_path: Path, run_master: StartMaster
) -> None:
    """PM2_KILL_SIGNAL=SIGTERM in the master's environment: a node worker is stopped with SIGTERM, not SIGINT."""
    m = start(
        run_master,
        tmp_path,
        [fork_node_app("web", free_port())],
        env={"PM2_KILL_SIGNAL": "SIGTERM"},
    )
    exited = stop_and_exits(m, ["web"])["web"]
    assert exited["signal"] == "SIGTERM"  # pm2_app.js has no SIGTERM handler
    assert "got SIGINT" not in output(m)


def test_kill_signal_key_sets_one_apps_stop_signal(
    node: str, tmp_path: Path, run_master: StartMaster
) -> None:
    """`kill_signal: SIGTERM` on one node app: that one gets SIGTERM, the other pm2's SIGINT."""
    apps = [
        fork_node_app("term", free_port(), kill_signal="SIGTERM"),
        fork_node_app("int", free_port()),
    ]
    m = start(run_master, tmp_path, apps)
    exits = stop_and_exits(m, ["term", "int"])
    assert exits["term"]["signal"] == "SIGTERM"
    assert (exits["int"]["code"], exits["int"]["signal"]) == (0, None)
    assert "got SIGINT" in output(m, "int")
    assert "got SIGINT" not in output(m, "term")


def test_npm_start_in_cluster_mode_shares_the_port(
    node: str, tmp_path: Path, run_master: StartMaster
) -> None:
    """`npm start` as the app's script (node under npm, IPC channel and all): both instances serve the port."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("`npm` is not on PATH")
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    shutil.copy(APPS / "http_app.js", app_dir / "http_app.js")
    (app_dir / "package.json").write_text(
        '{"private": true, "scripts": {"start": "node http_app.js"}}\n'
    )
    port = free_port()
    app = cluster_app("web", npm, port, args=["start"], interpreter="none", cwd=str(app_dir))
    m = start(run_master, tmp_path, [app])
    m.wait_event("worker_ready", count=2, timeout=START_TIMEOUT_S)
    pids = wait_pids(port)
    assert not pids & started_pids(m), "npm itself must not serve"
    assert_spread(port)
    assert_no_port_error(m)

"""`show` carries live per-instance metrics from a real master: process figures, and what
node and Python workers report through the preloads (issue #14)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from runtime.control.connection import call
from runtime.control.protocol import socket_is_live
from tests.integration.conftest import ROOT, Master, free_port, py, write_ecosystem

LOOP_KEYS = {"loop_delay_p50_ms", "loop_delay_p99_ms", "active_handles"}
REPORT_WAIT_S = 15.0

NODE_SERVER = r"""
const http = require('http');
http.createServer((req, res) => res.end('ok\n')).listen(process.env.PORT);  // unmodified
let users = 0;
setInterval(() => {
  users += 1;
  process.send({type: 'axm:monitor', data: {'Realtime users': {value: users, unit: 'users',
    type: 'metric', historic: true}, 'Mode': {value: 'warm'}}});
  process.send({type: 'runtime:metrics', data: {queue_depth: 7}});
}, 300);
setInterval(() => { const end = Date.now() + 150; while (Date.now() < end); }, 400);  // a stall
"""

PY_SERVER = r"""
import asyncio, os, sys, time
import runtime_metrics

async def handle(reader, writer):
    writer.write(b"HTTP/1.0 200 OK\r\n\r\nok\n")
    await writer.drain()
    writer.close()

async def main():
    await asyncio.start_server(handle, port=int(os.environ["PORT"]))  # unmodified: binds PORT
    loop = asyncio.get_running_loop()
    print("loop", type(loop).__module__, flush=True)
    runtime_metrics.set("jobs", 2)
    runtime_metrics.set("state", "serving")
    def stall():
        time.sleep(0.3)  # the blocking callback
        loop.call_later(0.6, stall)
    loop.call_later(0.3, stall)
    await asyncio.Event().wait()

if sys.argv[1:] == ["uvloop"]:
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


@pytest.fixture
def node_exe() -> str:
    """The `node` executable (skip without it)."""
    path = shutil.which("node")
    if path is None:
        pytest.skip("`node` is not on PATH")
    return path


@pytest.fixture(scope="session")
def pm2_io_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch directory with @pm2/io installed from the registry (skip if offline)."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("`npm` is not on PATH")
    where = tmp_path_factory.mktemp("pm2io")
    (where / "package.json").write_text('{"private": true}\n')
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--fetch-retries=1",
             "--fetch-timeout=15000", "@pm2/io"],
            cwd=where, capture_output=True, text=True, timeout=45,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip("npm install @pm2/io took too long (offline?)")
    if done.returncode != 0:
        pytest.skip(f"npm install @pm2/io failed: {done.stderr.strip()[-200:]}")
    return where


def start(
    run_master: Callable[..., Master], tmp_path: Path, apps: list[dict[str, Any]]
) -> tuple[Master, str]:
    ctl = str(tmp_path / "ctl.sock")
    eco = write_ecosystem(tmp_path / "eco.json", apps)
    master = run_master(str(eco), "--control", ctl)
    # listening, not only there: the path exists from bind() on, a moment before listen()
    master.wait_for(lambda: socket_is_live(ctl), what="the control socket")
    return master, ctl


def processes(ctl: str, name: str) -> list[dict[str, Any]]:
    return call(ctl, "show", name)["processes"]  # type: ignore[no-any-return]


def wait_metrics(
    ctl: str, name: str, ok: Callable[[dict[str, Any]], bool], count: int = 1
) -> list[dict[str, Any]]:
    """The app's process rows once `count` of them satisfy `ok` (bounded wait)."""
    deadline = time.monotonic() + REPORT_WAIT_S
    while True:
        rows = processes(ctl, name)
        if sum(1 for r in rows if r["pid"] and ok(r)) >= count:
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"no such metrics for {name} within {REPORT_WAIT_S} s: {rows}")
        time.sleep(0.2)


def show_text(ctl: str, name: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "runtime", "show", name, "--control", ctl],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_node_cluster_workers_report_loop_and_custom_metrics(
    tmp_path: Path, run_master: Callable[..., Master], node_exe: str
) -> None:
    """Two unmodified node servers in cluster mode: fds, loop delay (the stall in p99),
    handles, and custom metrics in pm2's axm:monitor form and the plain form."""
    (tmp_path / "server.js").write_text(NODE_SERVER)
    port = free_port()
    app = {
        "name": "web",
        "script": "server.js",
        "instances": 2,
        "listen": [f"127.0.0.1:{port}"],
        "env": {"PORT": str(port)},
    }
    _, ctl = start(run_master, tmp_path, [app])

    def reported(row: dict[str, Any]) -> bool:
        metrics = row["app_metrics"]
        return metrics.keys() >= LOOP_KEYS and "queue_depth" in metrics and "Mode" in metrics

    rows = wait_metrics(ctl, "web", reported, count=2)
    for row in rows:
        metrics = row["app_metrics"]
        assert isinstance(row["fds"], int)
        assert row["fds"] > 3
        assert row["memory_bytes"] > 0
        assert row["uptime_s"] > 0
        assert isinstance(row["connections"], int)
        assert metrics["queue_depth"] == 7
        assert metrics["Mode"] == "warm"
        assert metrics["Realtime users"] >= 1
        assert metrics["active_handles"] >= 1
        assert metrics["active_requests"] >= 0
        assert metrics["age_s"] < 5
    # the 150 ms stall every 400 ms shows in p99 of some report
    wait_metrics(ctl, "web", lambda r: r["app_metrics"].get("loop_delay_p99_ms", 0) >= 80)
    text = show_text(ctl, "web")
    assert "live metrics:" in text
    assert "loop delay p50" in text
    assert "queue_depth=7" in text
    assert "Mode=warm" in text


def test_pm2_io_metric_shows_unchanged(
    tmp_path: Path, run_master: Callable[..., Master], node_exe: str, pm2_io_dir: Path
) -> None:
    """An app using the real @pm2/io: `io.metric({name}).set(v)` shows in show --json, with
    @pm2/io's own metrics beside it, and the preload's loop figures win their keys."""
    (pm2_io_dir / "pm2app.js").write_text(
        "const io = require('@pm2/io');\n"
        "io.metric({ name: 'Realtime users' }).set(42);\n"
        "require('http').createServer((q, s) => s.end('ok')).listen(process.env.PORT);\n"
    )
    port = free_port()
    app = {
        "name": "pm2app",
        "script": str(pm2_io_dir / "pm2app.js"),
        "cwd": str(pm2_io_dir),
        "instances": 1,
        "listen": [f"127.0.0.1:{port}"],
        "env": {"PORT": str(port)},
    }
    _, ctl = start(run_master, tmp_path, [app])
    # The loop keys are waited for too: require('@pm2/io') can block the loop past the first
    # report, and the delay histogram records from its second tick on, so that report has no
    # percentiles yet (absent, not zero); the next one has them.
    rows = wait_metrics(
        ctl,
        "pm2app",
        lambda r: r["app_metrics"].keys() >= {"Realtime users", "Heap Size", *LOOP_KEYS},
    )
    metrics = rows[0]["app_metrics"]
    assert metrics["Realtime users"] == 42
    assert all(isinstance(metrics[k], int | float) for k in LOOP_KEYS)


def test_node_fork_worker_reports_and_its_child_does_not(
    tmp_path: Path, run_master: Callable[..., Master], node_exe: str
) -> None:
    """A fork-mode node worker reports too; a child it forks (channel to the app) never
    sends the runtime's report to the app."""
    (tmp_path / "child.js").write_text("setTimeout(() => {}, 20000);\n")
    (tmp_path / "main.js").write_text(
        "const child = require('child_process').fork(__dirname + '/child.js');\n"
        "child.on('message', (m) => console.log('child said ' + JSON.stringify(m)));\n"
        "setInterval(() => {}, 1000);\n"
    )
    master, ctl = start(run_master, tmp_path, [{"name": "job", "script": "main.js"}])
    rows = wait_metrics(ctl, "job", lambda r: r["app_metrics"].keys() >= LOOP_KEYS)
    assert rows[0]["app_metrics"]["active_handles"] >= 1
    time.sleep(2.5)  # the child would have reported twice by now
    assert not [r for r in master.lines("job") if "child said" in str(r.get("message"))]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_python_asyncio_worker_reports_its_stall(
    tmp_path: Path, run_master: Callable[..., Master], loop: str
) -> None:
    """An asyncio (or uvloop) server in cluster mode: a 300 ms blocking callback shows in
    p99, p50 stays low, tasks count as handles, runtime_metrics.set() values arrive."""
    port = free_port()
    app = {
        "name": "api",
        "instances": 1,
        "exec_mode": "cluster",
        "listen": [f"127.0.0.1:{port}"],
        "env": {"PORT": str(port)},
        **py(PY_SERVER),
    }
    app["args"] = [*app["args"], loop]
    master, ctl = start(run_master, tmp_path, [app])
    rows = wait_metrics(ctl, "api", lambda r: r["app_metrics"].get("loop_delay_p99_ms", 0) >= 200)
    metrics = rows[0]["app_metrics"]
    assert metrics["loop_delay_p50_ms"] < 100
    assert metrics["active_handles"] >= 1
    assert metrics["jobs"] == 2
    assert metrics["state"] == "serving"
    assert metrics["age_s"] < 5
    assert isinstance(rows[0]["fds"], int)
    expected = "uvloop" if loop == "uvloop" else "asyncio.unix_events"
    assert [r for r in master.lines("api") if r.get("message") == f"loop {expected}"]


def test_worker_that_never_reports_has_empty_metrics(
    tmp_path: Path, run_master: Callable[..., Master]
) -> None:
    """A worker that reports nothing shows app_metrics {} (and its fds); a stopped one too."""
    sleeper = "import time\nwhile True: time.sleep(1)"
    _, ctl = start(run_master, tmp_path, [{"name": "quiet", **py(sleeper)}])
    rows = wait_metrics(ctl, "quiet", lambda r: r["uptime_s"] > 2.5)
    assert rows[0]["app_metrics"] == {}
    assert isinstance(rows[0]["fds"], int)
    assert "no app metrics reported" in show_text(ctl, "quiet")
    call(ctl, "stop", "quiet")
    stopped = processes(ctl, "quiet")[0]
    assert stopped["pid"] is None
    assert stopped["app_metrics"] == {}
    assert stopped["fds"] is None


NODE_FLOOD = r"""
const junk = 'x'.repeat(300);
let sent = 0;
function burst() {
  for (let i = 0; i < 2000; i++, sent++) {
    const data = {};
    data['name-' + sent + '-' + 'n'.repeat(sent % 90)] = junk;
    data.nested = {value: {deep: [[[[1]]]]}};
    process.send({type: sent % 2 ? 'axm:monitor' : 'runtime:metrics', data});
  }
  if (sent < 40000) setImmediate(burst);
  else console.log('flooded ' + sent);
}
burst();
setInterval(() => {}, 1000);
"""

PY_FLOOD = r"""
import json, os, socket, time
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
path = os.environ["NOTIFY_SOCKET"]
for i in range(20000):
    line = "X_RUNTIME_METRICS=" + json.dumps({f"n{i}-" + "z" * (i % 90): "v" * 300})
    try:
        sock.sendto(line.encode(), path)
    except BlockingIOError:
        pass
print("flooded", flush=True)
while True:
    time.sleep(1)
"""


def test_a_flood_of_reports_stays_bounded(
    tmp_path: Path, run_master: Callable[..., Master], node_exe: str
) -> None:
    """40,000 node messages and 20,000 datagrams with new names and long values: each worker
    keeps at most 32 names of <= 64 chars, strings <= 128, and the master's memory stays flat."""
    (tmp_path / "flood.js").write_text(NODE_FLOOD)
    apps = [{"name": "nflood", "script": "flood.js"}, {"name": "pflood", **py(PY_FLOOD)}]
    master, ctl = start(run_master, tmp_path, apps)
    rss_before = psutil.Process(master.pid).memory_info().rss

    def flooded(name: str) -> bool:
        return any("flooded" in str(r.get("message")) for r in master.lines(name))

    master.wait_for(lambda: flooded("nflood") and flooded("pflood"), REPORT_WAIT_S, "the floods")
    for name in ("nflood", "pflood"):
        metrics = processes(ctl, name)[0]["app_metrics"]
        own = {
            "age_s",
            "loop_delay_p50_ms",
            "loop_delay_p99_ms",
            "active_handles",
            "active_requests",
        }
        custom = {k: v for k, v in metrics.items() if k not in own}
        assert len(custom) == 32  # of thousands of new names
        assert all(len(k) <= 64 for k in custom)
        assert all(len(v) <= 128 for v in custom.values() if isinstance(v, str))
        assert "nested" not in custom  # not a number or a string
    grown_mb = (psutil.Process(master.pid).memory_info().rss - rss_before) / 2**20
    assert grown_mb < 30, f"the master grew {grown_mb:.1f} MB"


def test_preload_never_keeps_a_node_worker_alive(
    tmp_path: Path, run_master: Callable[..., Master], node_exe: str
) -> None:
    """A node script that ends on its own exits on time with the preload reporting."""
    (tmp_path / "once.js").write_text("setTimeout(() => console.log('done'), 1500);\n")
    eco = write_ecosystem(
        tmp_path / "eco.json", [{"name": "once", "script": "once.js", "autorestart": False}]
    )
    master = run_master(str(eco))
    assert master.wait_exit(15) == 0
    exited = master.events("worker_exited", app="once")
    assert exited[0]["code"] == 0
    assert exited[0]["uptime_s"] < 4.0


def test_npm_reports_nothing_for_its_app(
    tmp_path: Path, run_master: Callable[..., Master], node_exe: str
) -> None:
    """Under `npm start` npm holds the channel: it sends no loop figures of its own."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("`npm` is not on PATH")
    (tmp_path / "package.json").write_text(
        json.dumps({"private": True, "scripts": {"start": "node server.js"}})
    )
    (tmp_path / "server.js").write_text("console.log('up'); setInterval(() => {}, 1000);\n")
    _, ctl = start(run_master, tmp_path, [{"name": "npmapp", "script": npm, "args": ["start"]}])
    rows = wait_metrics(ctl, "npmapp", lambda r: r["uptime_s"] > 3.5)
    assert rows[0]["app_metrics"] == {}

"""The `--web` dashboard in a real headless Chromium, driven over the DevTools protocol.

Chromium talks CDP over `--remote-debugging-pipe` (fd 3 in, fd 4 out, NUL-terminated
JSON), so no websocket client and no debugging port are needed.

`RUNTIME_SCREENSHOT=docs/dashboard.png pytest tests/integration/test_dashboard_browser.py`
also renders the screenshot committed under docs/.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import select
import shlex
import shutil
import socket
import subprocess
import sys
import time
from base64 import b64decode
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, Master, free_port, py, write_ecosystem

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason="chromium is not installed (apt-get install chromium)",
)

TOKEN = "browser-token-42"
TICKER = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.3)"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-pipe",
)


def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """Headless Chromium with one page, commands sent over the CDP pipe."""

    def __init__(self, profile: Path, size: tuple[int, int] = (1280, 800)) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # above fd 4, so the shell's `3<&X 4>&Y` cannot overwrite one end with the other
        to_chrome_r, from_chrome_w = (_high_fd(to_chrome_r), _high_fd(from_chrome_w))
        argv = [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
        ]
        # the child must see the pipe ends as fd 3 and 4: let bash place them (dash only knows fds 0-9)
        script = f"exec {shlex.join(argv)} 3<&{to_chrome_r} 4>&{from_chrome_w}"
        self.proc = subprocess.Popen(
            ["/bin/bash", "-c", script],
            pass_fds=(to_chrome_r, from_chrome_w),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._ids = iter(range(1, 1 << 30))
        self.events: list[dict[str, Any]] = []
        # the first answer waits for chromium to start: slow on a loaded 2-core machine
        target = self.call("Target.createTarget", {"url": "about:blank"}, timeout=60)["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=self.session)

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_chrome], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise ConnectionError("chromium closed its DevTools pipe")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)  # type: ignore[no-any-return]

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 20.0,
    ) -> Any:
        msg_id = next(self._ids)
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def evaluate(self, expression: str) -> Any:
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True},
            session=self.session,
        )
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}: last value {value!r}")

    def click(self, selector: str, what: str) -> None:
        """A real mouse click (pressed and released) in the middle of the element."""
        box = self.wait_for(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
            " if (!e || e.disabled) return null; e.scrollIntoView({block: 'center'});"
            " const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()",
            what,
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": box[0], "y": box[1], "button": "left", "clickCount": 1},
                session=self.session,
            )

    def errors(self) -> list[str]:
        """Uncaught exceptions and console/CSP errors the page reported so far."""
        self.evaluate("0")  # flush pending events
        out = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.exceptionThrown":
                out.append(str(params.get("exceptionDetails", {}).get("text")))
            elif event.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
                out.append(str(params["entry"].get("text")))
        return out

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", {"format": "png"}, session=self.session)
        path.write_bytes(b64decode(data["data"]))

    def close(self) -> None:
        with contextlib.suppress(OSError, TimeoutError, RuntimeError):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """A headless Chromium with a throw-away profile, closed at the end."""
    b = Browser(tmp_path / "profile")
    yield b
    b.close()


ROWS_JS = (
    "JSON.stringify([...document.querySelectorAll('#procs tr')]"
    ".map(r => [r.dataset.name, r.dataset.pid, Number(r.dataset.restarts), r.dataset.status]))"
)


def rows(browser: Browser) -> list[list[Any]]:
    return json.loads(browser.evaluate(ROWS_JS))  # type: ignore[no-any-return]


def start_master(
    run_master: Callable[..., Master], tmp_path: Path, apps: list[dict[str, Any]]
) -> tuple[Master, int]:
    port = free_port()
    eco = write_ecosystem(tmp_path / "eco.json", apps)
    master = run_master(
        str(eco),
        "--web",
        f"127.0.0.1:{port}",
        "--web-token",
        TOKEN,
        "--control",
        str(tmp_path / "ctl.sock"),
    )
    master.wait_event("web_started")
    return master, port


def restart(tmp_path: Path, target: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime",
            "restart",
            target,
            "--control",
            str(tmp_path / "ctl.sock"),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=True,
        timeout=30,
    )


def test_dashboard_shows_every_worker_and_updates_live(
    run_master: Callable[..., Master], tmp_path: Path, browser: Browser
) -> None:
    """The page loads with its token, lists every worker and log lines, and updates in place after a restart."""
    apps = [{"name": "web", **py(TICKER), "instances": 2}, {"name": "worker", **py(TICKER)}]
    master, port = start_master(run_master, tmp_path, apps)
    started = master.wait_event("worker_started", count=3)
    pids = sorted(str(r["pid"]) for r in started)
    browser.call(
        "Page.navigate", {"url": f"http://127.0.0.1:{port}/?token={TOKEN}"}, browser.session
    )
    browser.wait_for(
        f"{ROWS_JS}.split('\"').filter(x => /^[0-9]+$/.test(x)).length >= 3", "three rows"
    )
    browser.wait_for("document.getElementById('conn').textContent === 'live'", "a live stream")
    assert sorted(pid for _, pid, _, _ in rows(browser)) == pids
    assert sorted(name for name, *_ in rows(browser)) == ["web", "web", "worker"]
    browser.wait_for(
        "[...document.querySelectorAll('#logs .msg')].some(m => m.textContent === 'tick')",
        "worker log lines in the tail",
    )
    browser.evaluate("window.samePage = true")

    restart(tmp_path, "worker")
    browser.wait_for(
        f"JSON.parse({ROWS_JS}).some(r => r[0] === 'worker' && r[2] === 1)", "1 restart"
    )
    worker_pid = next(pid for name, pid, _, _ in rows(browser) if name == "worker")
    assert worker_pid not in pids
    assert browser.evaluate("window.samePage") is True  # updated live, not reloaded
    assert int(browser.evaluate("document.body.dataset.snapshots")) >= 2
    assert browser.errors() == []


def test_dashboard_shows_connections_waiting_for_a_worker(
    run_master: Callable[..., Master], tmp_path: Path, browser: Browser
) -> None:
    """A worker that never accepts: the Apps table shows the 3 queued connections and a
    rising saturation, the worker's row its queue; both from the master's own sockets."""
    port = free_port()
    app = {
        "name": "api",
        **py("import time\ntime.sleep(3600)"),
        "exec_mode": "cluster",
        "instances": 1,
        "listen": [f"127.0.0.1:{port}"],
    }
    master, web = start_master(run_master, tmp_path, [app])
    master.wait_event("worker_started")
    clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
    try:
        browser.call(
            "Page.navigate", {"url": f"http://127.0.0.1:{web}/?token={TOKEN}"}, browser.session
        )
        row = "document.querySelector('#apps tr[data-name=\"api\"]')"
        browser.wait_for(f"{row} && {row}.dataset.waiting === '3'", "3 waiting connections")
        browser.wait_for(f"Number({row}.dataset.saturation) > 0", "saturation above 0")
        queue = browser.evaluate("document.querySelector('#procs tr').children[9].textContent")
        assert queue == "3"
        assert browser.errors() == []
    finally:
        for c in clients:
            c.close()


def test_dashboard_without_token_shows_nothing(
    run_master: Callable[..., Master], tmp_path: Path, browser: Browser
) -> None:
    """Without the token the browser gets a 401 and no process data."""
    _master, port = start_master(run_master, tmp_path, [{"name": "web", **py(TICKER)}])
    browser.call("Page.navigate", {"url": f"http://127.0.0.1:{port}/"}, browser.session)
    browser.wait_for("document.readyState === 'complete'", "the page")
    text = browser.evaluate("document.body.innerText")
    assert "unauthorized" in text
    assert "web" not in text


def status(port: int) -> dict[str, Any]:
    """GET /status with the token."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/status", headers={"Authorization": f"Bearer {TOKEN}"})
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def procs_of(snapshot: dict[str, Any], app: str) -> list[dict[str, Any]]:
    return [p for p in snapshot["processes"] if p["name"] == app]


def wait_status(
    port: int, predicate: Callable[[dict[str, Any]], Any], what: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Poll /status until `predicate(snapshot)` holds."""
    deadline = time.monotonic() + timeout
    snap = status(port)
    while not predicate(snap):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}: {procs_of(snap, 'web')}")
        time.sleep(0.1)
        snap = status(port)
    return snap


def open_dashboard(browser: Browser, port: int) -> None:
    browser.call(
        "Page.navigate", {"url": f"http://127.0.0.1:{port}/?token={TOKEN}"}, browser.session
    )
    browser.wait_for("Number(document.body.dataset.snapshots) >= 1", "the first snapshot")


def app_button(app: str, verb: str, n: str | None = None) -> str:
    extra = f'[data-n="{n}"]' if n else ""
    return f'#apps tr[data-name="{app}"] button[data-verb="{verb}"]{extra}'


def press(browser: Browser, app: str, verb: str, n: str | None = None) -> str:
    """Click one of an app's buttons and wait for its inline result; return its text."""
    before = browser.evaluate(f"document.querySelector('{app_button(app, verb, n)}') !== null")
    assert before, f"no {verb} button for {app}"
    browser.click(app_button(app, verb, n), f"the {verb} button of {app}")
    return _result(browser, app, verb)


def _result(browser: Browser, app: str, verb: str) -> str:
    cell = f'#apps tr[data-name="{app}"] .result[data-verb="{verb}"]'
    text = browser.wait_for(
        f"(() => {{ const r = document.querySelector('{cell}'); return r && r.textContent; }})()",
        f"the result of {verb}",
        30,
    )
    kind = browser.evaluate(f"document.querySelector('{cell}').dataset.result")
    assert kind == "ok", text
    return str(text)


def pids(snapshot: dict[str, Any], app: str) -> list[int | None]:
    return [p["pid"] for p in procs_of(snapshot, app)]


def all_online(snapshot: dict[str, Any], app: str, count: int) -> bool:
    rows = procs_of(snapshot, app)
    return len(rows) == count and all(p["status"] == "online" and p["pid"] for p in rows)


FORK_TICKERS = [
    {"name": "web", **py(TICKER), "exec_mode": "fork", "instances": 2, "min_uptime": 300},
    {"name": "other", **py(TICKER), "exec_mode": "fork"},
]


def test_dashboard_buttons_restart_reload_stop_start(
    run_master: Callable[..., Master], tmp_path: Path, browser: Browser
) -> None:
    """restart gives new pids and one more restart each, reload new pids, stop (once
    confirmed) stopped processes, start online ones: each checked through /status."""
    _master, port = start_master(run_master, tmp_path, FORK_TICKERS)
    first = wait_status(port, lambda s: all_online(s, "web", 2), "two online web workers")
    other = pids(first, "other")
    open_dashboard(browser, port)

    assert press(browser, "web", "restart").startswith("restarted")
    snap = wait_status(port, lambda s: all_online(s, "web", 2), "web back online")
    assert not set(pids(snap, "web")) & set(pids(first, "web"))
    assert [p["restarts"] for p in procs_of(snap, "web")] == [1, 1]

    assert press(browser, "web", "reload").startswith("reloaded")
    reloaded = wait_status(port, lambda s: all_online(s, "web", 2), "web reloaded")
    assert not set(pids(reloaded, "web")) & set(pids(snap, "web"))

    browser.click(app_button("web", "stop"), "the stop button")
    confirm = '#apps tr[data-name="web"] button.confirm-yes'
    browser.wait_for(f"document.querySelector('{confirm}') !== null", "the confirmation")
    assert all_online(status(port), "web", 2)  # nothing stopped before the confirmation
    browser.click(confirm, "yes, stop")
    assert _result(browser, "web", "stop").startswith("stopped")
    stopped = status(port)
    assert [p["status"] for p in procs_of(stopped, "web")] == ["stopped", "stopped"]
    assert pids(stopped, "web") == [None, None]
    row = '#apps tr[data-name="web"]'
    browser.wait_for(f"document.querySelector('{row}').dataset.state === 'stopped'", "stopped")

    assert press(browser, "web", "start").startswith("started")
    wait_status(port, lambda s: all_online(s, "web", 2), "web started again")
    assert pids(status(port), "other") == other  # the other app was left alone
    assert browser.errors() == []


def test_dashboard_scale_buttons(
    run_master: Callable[..., Master], tmp_path: Path, browser: Browser
) -> None:
    """+1 and -1 change the app's instance count, checked through /status and the row."""
    _master, port = start_master(run_master, tmp_path, FORK_TICKERS)
    wait_status(port, lambda s: all_online(s, "web", 2), "two online web workers")
    open_dashboard(browser, port)
    assert press(browser, "web", "scale", "+1").startswith("scaled to 3")
    wait_status(port, lambda s: all_online(s, "web", 3), "three web workers")
    row = '#apps tr[data-name="web"]'
    browser.wait_for(f"document.querySelector('{row}').dataset.instances === '3'", "3 in the row")
    assert press(browser, "web", "scale", "-1").startswith("scaled to 2")
    wait_status(port, lambda s: len(procs_of(s, "web")) == 2, "two web workers")
    assert len(procs_of(status(port), "other")) == 1
    assert browser.errors() == []


def test_dashboard_draws_history_on_first_paint(
    run_master: Callable[..., Master], tmp_path: Path, browser: Browser
) -> None:
    """A page opened after some seconds draws that many sparkline points at its first
    snapshot, from the history the master kept, not only the points it saw itself."""
    _master, port = start_master(run_master, tmp_path, FORK_TICKERS)
    wait_status(port, lambda s: s["runtime"]["uptime_s"] >= 7, "7 s of history", 30)
    open_dashboard(browser, port)
    seen = json.loads(
        browser.evaluate(
            "JSON.stringify({snapshots: Number(document.body.dataset.snapshots),"
            " history: Number(document.body.dataset.historyPoints),"
            " cpu: [...document.querySelectorAll('#procs svg.spark.cpu')]"
            ".map(s => Number(s.dataset.points)),"
            " sat: [...document.querySelectorAll('#apps svg.spark.sat')]"
            ".map(s => Number(s.dataset.points))})"
        )
    )
    assert seen["history"] >= 5, seen
    assert len(seen["cpu"]) == 3, seen
    assert len(seen["sat"]) == 2, seen
    assert all(points >= 5 + seen["snapshots"] for points in seen["cpu"] + seen["sat"]), seen
    points = browser.evaluate(
        "document.querySelector('#procs svg.spark.cpu polyline').getAttribute('points')"
    )
    assert len(points.split()) >= 5
    assert browser.errors() == []


ROW = (
    "{id: 9, name: 'x', mode: 'fork', instance: 0, pid: 1, status: 'online', ready: true,"
    " uptime_s: 1, restarts: 0, backlog: null, connections: 0, cpu_percent: 1.5,"
    " memory_bytes: 1024"
)
METRICS_JS = """(() => {
  renderTable([%s]);
  const t = document.getElementById('procs-table'), r = document.querySelector('#procs tr');
  return [t.className, r.querySelector('td.fds').textContent,
          r.querySelector('td.appm').textContent, r.querySelector('td.appm').className,
          getComputedStyle(r.querySelector('td.appm')).display];
})()"""


def test_dashboard_shows_fds_and_app_metrics_only_when_rows_carry_them(
    run_master: Callable[..., Master], tmp_path: Path, browser: Browser
) -> None:
    """Rows with `fds` and `app_metrics` (loop delay, handles, the app's own) get those
    columns, a stale report is marked; rows without them hide both columns."""
    _master, port = start_master(run_master, tmp_path, [{"name": "web", **py(TICKER)}])
    open_dashboard(browser, port)
    metrics = (
        "fds: 17, app_metrics: {loop_delay_p50_ms: 0.41, loop_delay_p99_ms: 12.3,"
        " active_handles: 5, active_requests: 0, 'Realtime users': 42, age_s: 0.6}}"
    )
    shown = browser.evaluate(METRICS_JS % f"{ROW}, {metrics}")
    assert shown == [
        "",
        "17",
        "loop 0.4 / 12.3 ms \u00b7 handles 5 \u00b7 requests 0 \u00b7 Realtime users 42",
        "appm",
        "table-cell",
    ]
    stale = browser.evaluate(
        METRICS_JS % f"{ROW}, fds: 3, app_metrics: {{active_handles: 2, age_s: 9}}}}"
    )
    assert stale[2:4] == ["handles 2 \u00b7 silent for 9 s", "appm stale"]
    hidden = browser.evaluate(METRICS_JS % f"{ROW}, fds: null, app_metrics: {{}}}}")
    assert hidden[0] == "no-fds no-metrics"
    assert hidden[4] == "none"
    assert browser.errors() == []


EVENTS_JS = (
    "JSON.stringify([...document.querySelectorAll('#logs .event')]"
    ".map(l => [l.dataset.event, l.dataset.app, Number(l.dataset.pid)]))"
)


def test_dashboard_log_pane_shows_runtime_events_once(
    run_master: Callable[..., Master], tmp_path: Path, browser: Browser
) -> None:
    """The log pane shows the runtime's own events, styled apart from worker lines: those
    from before the page opened and new ones, each once."""
    master, port = start_master(run_master, tmp_path, FORK_TICKERS)
    wait_status(port, lambda s: all_online(s, "web", 2), "two online web workers")
    open_dashboard(browser, port)
    browser.wait_for(
        "document.querySelector('#logs .event[data-event=\"web_started\"]') !== null",
        "web_started from before the page opened",
    )
    before = json.loads(browser.evaluate(EVENTS_JS))
    started = [e for e in before if e[0] == "worker_started"]
    assert sorted(app for _, app, _ in started) == ["other", "web", "web"]
    assert any(e[0] == "runtime_started" for e in before)
    press(browser, "other", "restart")
    pid = pids(wait_status(port, lambda s: all_online(s, "other", 1), "other again"), "other")[0]
    browser.wait_for(
        f"JSON.parse({EVENTS_JS}).some(e => e[0] === 'worker_started' && e[2] === {pid})",
        "the new worker's worker_started",
        10,
    )
    after = [tuple(e) for e in json.loads(browser.evaluate(EVENTS_JS))]
    assert after[: len(before)] == [tuple(e) for e in before]  # nothing redrawn, nothing lost
    assert after.count(("worker_started", "other", pid)) == 1
    assert [e[0] for e in after if e[1] == "other"].count("worker_exited") == 1
    assert len(master.events("worker_started", app="other")) == 2
    styled = browser.evaluate(
        "[getComputedStyle(document.querySelector('#logs .event .ev')).color,"
        " getComputedStyle(document.querySelector('#logs .line .msg')).color]"
    )
    assert styled[0] != styled[1]
    browser.click("#show-events", "the events checkbox")
    browser.wait_for(
        "[...document.querySelectorAll('#logs .event')].every(l => l.hidden)", "events hidden"
    )
    assert browser.errors() == []


CRASHER = "import time\ntime.sleep(0.3)\nraise SystemExit(1)"


def test_dashboard_shows_waiting_restart_not_down(
    run_master: Callable[..., Master], tmp_path: Path, browser: Browser
) -> None:
    """An app that crashed and waits out its restart_delay is `waiting restart` in the
    header and its rows (warn colour), not down."""
    apps = [{"name": "flaky", **py(CRASHER), "restart_delay": 4000}, FORK_TICKERS[1]]
    _master, port = start_master(run_master, tmp_path, apps)
    open_dashboard(browser, port)
    badge = "document.getElementById('health')"
    browser.wait_for(f"{badge}.dataset.state === 'waiting restart'", "waiting restart")
    assert browser.evaluate(f"{badge}.className") == "badge warn"
    row = '#apps tr[data-name="flaky"]'
    browser.wait_for(f"document.querySelector('{row}').dataset.state === 'waiting restart'", "row")
    proc = '#procs tr[data-name="flaky"] td.st'
    browser.wait_for(
        f"document.querySelector('{proc}').textContent === 'waiting restart'", "process row"
    )
    assert browser.evaluate(f"document.querySelector('{proc}').className") == "st waiting"
    snap = status(port)
    assert snap["runtime"]["state"] in ("waiting restart", "starting")
    assert next(a for a in snap["apps"] if a["name"] == "flaky")["state"] in (
        "waiting restart",
        "starting",
    )
    assert "down" not in browser.evaluate("document.querySelector('header').textContent")
    assert browser.errors() == []


CPU_BURNER = """
import math, time
phase = 0.0
while True:
    busy = 0.05 + 0.04 * math.sin(phase); phase += 0.3
    end = time.monotonic() + busy
    while time.monotonic() < end:
        pass
    time.sleep(0.1)
    if round(phase / 0.3) % 8 == 0:
        print(f"handled batch in {busy * 1000:.0f} ms", flush=True)
"""
GROWER = """
import time
hoard = []
while True:
    hoard.append(bytearray(300_000))
    if len(hoard) > 120:
        hoard.clear()
    if len(hoard) % 8 == 0:
        print(f"cache size {len(hoard)}", flush=True)
    time.sleep(0.25)
"""
SLOW_TICKER = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(2)"


@pytest.mark.skipif(
    not os.environ.get("RUNTIME_SCREENSHOT"), reason="set RUNTIME_SCREENSHOT=PATH to render it"
)
@pytest.mark.timeout(150)
def test_render_dashboard_screenshot(run_master: Callable[..., Master], tmp_path: Path) -> None:
    """Render the dashboard of a few busy apps opened after 45 s, with the history drawn at
    once and a restart pressed (for docs/dashboard.png)."""
    apps = [
        {"name": "api", **py(CPU_BURNER), "exec_mode": "fork", "instances": 2},
        {"name": "cache", **py(GROWER)},
        {"name": "jobs", **py(SLOW_TICKER)},
    ]
    _master, port = start_master(run_master, tmp_path, apps)
    wait_status(port, lambda s: s["runtime"]["uptime_s"] >= 45, "45 s of history", 90)
    browser = Browser(tmp_path / "profile", size=(1280, 1180))
    try:
        open_dashboard(browser, port)
        press(browser, "jobs", "restart")
        browser.wait_for("Number(document.body.dataset.snapshots) >= 4", "a few snapshots")
        browser.evaluate("document.getElementById('logs').scrollTop = 1e9")
        browser.call(  # no button left looking hovered
            "Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 0, "y": 0}, browser.session
        )
        out = Path(os.environ["RUNTIME_SCREENSHOT"])
        browser.screenshot(out if out.is_absolute() else ROOT / out)
    finally:
        browser.close()

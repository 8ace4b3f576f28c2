"""The `--web` dashboard in a real headless Chromium, driven over the DevTools protocol.

Chromium talks CDP over `--remote-debugging-pipe` (fd 3 in, fd 4 out, NUL-terminated
JSON), so no websocket client and no debugging port are needed.

`RUNTIME_SCREENSHOT=docs/dashboard.png pytest tests/integration/test_dashboard_browser.py`
also renders the screenshot committed under docs/.
"""

from __future__ import annotations

import contextlib
import fcntl
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


CPU_BURNER = """
import math, time
phase = 0.0
while True:
    busy = 0.05 + 0.04 * math.sin(phase); phase += 0.3
    end = time.monotonic() + busy
    while time.monotonic() < end:
        pass
    time.sleep(0.1)
    print(f"handled batch in {busy * 1000:.0f} ms", flush=True)
"""
GROWER = """
import time
hoard = []
while True:
    hoard.append(bytearray(300_000))
    if len(hoard) > 120:
        hoard.clear()
    print(f"cache size {len(hoard)}", flush=True)
    time.sleep(0.25)
"""


@pytest.mark.skipif(
    not os.environ.get("RUNTIME_SCREENSHOT"), reason="set RUNTIME_SCREENSHOT=PATH to render it"
)
def test_render_dashboard_screenshot(
    run_master: Callable[..., Master], tmp_path: Path, browser: Browser
) -> None:
    """Render the dashboard of a few busy apps after 45 s of history (for docs/dashboard.png)."""
    apps = [
        {"name": "api", **py(CPU_BURNER), "instances": 2},
        {"name": "cache", **py(GROWER)},
        {"name": "jobs", **py(TICKER)},
    ]
    _master, port = start_master(run_master, tmp_path, apps)
    browser.call(
        "Page.navigate", {"url": f"http://127.0.0.1:{port}/?token={TOKEN}"}, browser.session
    )
    browser.wait_for("Number(document.body.dataset.snapshots) >= 45", "45 s of history", 90)
    out = Path(os.environ["RUNTIME_SCREENSHOT"])
    browser.screenshot(out if out.is_absolute() else ROOT / out)

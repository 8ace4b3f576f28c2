"""`python -m runtime monit` in a real terminal (tmux, 80x24) against a real master.

`RUNTIME_MONIT_SCREENSHOT=docs/monit.png pytest tests/integration/test_monit.py` also
renders the screenshot committed under docs/ (needs chromium).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import ROOT, Master, write_ecosystem
from tests.integration.terminal_shot import HAVE_CHROMIUM, capture

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"
)

TICKER = """\
import os, sys, time
me = f"{os.environ['RUNTIME_APP']}#{os.environ['RUNTIME_INSTANCE']}"
n = 0
while True:
    n += 1
    print(f"tick {me} {n}", flush=True)
    time.sleep(0.2)
"""
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


class Tmux:
    """A private tmux server (its own socket) running one command in a fixed-size pane."""

    def __init__(self, socket_path: Path) -> None:
        self.base = ["tmux", "-S", str(socket_path)]

    def start(self, command: str, width: int = 80, height: int = 24) -> None:
        size = ["-x", str(width), "-y", str(height)]
        subprocess.run(
            [*self.base, "new-session", "-d", "-s", "t", *size, command], check=True, timeout=10
        )

    def capture(self) -> str:
        out = subprocess.run(
            [*self.base, "capture-pane", "-p", "-t", "t"],
            capture_output=True,
            timeout=10,
            check=False,
        )
        return out.stdout.decode(errors="replace")

    def keys(self, *keys: str) -> None:
        subprocess.run([*self.base, "send-keys", "-t", "t", *keys], check=True, timeout=10)

    def resize(self, width: int, height: int) -> None:
        size = ["-x", str(width), "-y", str(height)]
        subprocess.run([*self.base, "resize-window", "-t", "t", *size], check=True, timeout=10)

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.capture()
            if predicate(screen):
                return screen
            time.sleep(0.1)
        pytest.fail(f"timed out waiting for {what}; the pane shows:\n{screen}")

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True, timeout=10, check=False)


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    """A tmux server private to the test, killed at the end."""
    term = Tmux(tmp_path / "tmux.sock")
    yield term
    term.kill()


def monit_command(ctl: Path, *env: str) -> str:
    """monit under the pane's shell, then its exit code, kept on screen."""
    monit = shlex.join(
        [
            "env",
            *env,
            f"PYTHONPATH={ROOT}",
            sys.executable,
            "-m",
            "runtime",
            "monit",
            "--control",
            str(ctl),
        ]
    )
    return f"{monit}; echo MONIT_EXIT=$?; sleep 60"


def start(
    run_master: Callable[..., Master], tmp_path: Path, apps: list[dict[str, Any]]
) -> tuple[Master, Path]:
    """A master running `apps` (scripts written under tmp_path), every worker started."""
    for app in apps:
        script = tmp_path / f"{app['name']}.py"
        script.write_text(app.pop("code", TICKER))
        app["script"] = str(script)
    eco = write_ecosystem(tmp_path / "eco.json", apps)
    ctl = tmp_path / "ctl.sock"
    master = run_master(str(eco), "--control", str(ctl))
    master.wait_event("worker_started", count=sum(int(a.get("instances", 1)) for a in apps))
    return master, ctl


def listing(ctl: Path) -> dict[str, dict[str, Any]]:
    """`list --json` by process name#instance."""
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "list", "--json", "--control", str(ctl)],
        env=ENV,
        capture_output=True,
        check=True,
        timeout=30,
    )
    return {f"{r['name']}#{r['instance']}": r for r in json.loads(out.stdout)}


def pane_text(screen: str, left: bool, top: bool) -> str:
    """One quarter of an 80x24 screen: the text of one pane."""
    lines = screen.splitlines()
    rows = lines[:14] if top else lines[14:23]
    return "\n".join((line[:40] if left else line[40:]) for line in rows)


def test_monit_shows_four_panes_at_80x24(
    run_master: Callable[..., Master], tmp_path: Path, tmux: Tmux
) -> None:
    """At 80x24 the process list, the selected process's log, its metrics and metadata all show real data, and follow the selection."""
    _master, ctl = start(run_master, tmp_path, [{"name": "web"}, {"name": "worker"}])
    rows = listing(ctl)
    tmux.start(monit_command(ctl))

    def ready(s: str) -> bool:
        procs = pane_text(s, left=True, top=True)
        return procs.count("online") == 2 and "tick web#0" in s and "web.py" in s

    screen = tmux.wait_for(ready, "the four panes with data")
    procs = pane_text(screen, left=True, top=True)
    assert "processes (2)" in procs
    assert " 0 web " in procs
    assert " 1 worker " in procs
    logs = pane_text(screen, left=False, top=True)
    assert "web#0 logs" in logs
    assert "tick web#0" in logs
    assert "worker#" not in logs
    metrics = pane_text(screen, left=True, top=False)
    assert "web#0 metrics" in metrics
    assert "cpu " in metrics
    assert "mem " in metrics
    assert "loop p50" in metrics  # no app metrics from a plain script: shown as '-'
    meta = pane_text(screen, left=False, top=False)
    assert "web#0 metadata" in meta
    script = next(line for line in meta.splitlines() if "script" in line).strip("│ ")
    shown = script.removeprefix("script").strip()
    assert shown == str(tmp_path / "web.py") or (
        shown.startswith("…") and str(tmp_path / "web.py").endswith(shown[1:])
    )
    assert f"pid      {rows['web#0']['pid']} · restarts 0" in meta
    assert "mode     fork · 1 instance" in meta
    assert screen.splitlines()[23].startswith("↑↓ select  r restart")

    tmux.keys("Down")
    screen = tmux.wait_for(
        lambda s: "tick worker#0" in pane_text(s, left=False, top=True) and "worker.py" in s,
        "the worker's log and metadata",
    )
    assert f"pid      {rows['worker#0']['pid']}" in pane_text(screen, left=False, top=False)

    tmux.keys("q")
    screen = tmux.wait_for(lambda s: "MONIT_EXIT=0" in s, "monit to quit with 0")
    assert "processes (" not in screen  # the alternate screen is gone: terminal restored


def test_restart_key_asks_and_restarts_the_selected_app(
    run_master: Callable[..., Master], tmp_path: Path, tmux: Tmux
) -> None:
    """`r` asks on the status line; `n` leaves the app alone, `y` restarts it (new pid, one more restart)."""
    master, ctl = start(run_master, tmp_path, [{"name": "web"}, {"name": "worker"}])
    before = listing(ctl)
    tmux.start(monit_command(ctl))
    tmux.wait_for(lambda s: "tick web#0" in s, "monit to show web's log")
    tmux.keys("Down")
    tmux.wait_for(lambda s: "worker#0 logs" in s, "the worker selected")

    tmux.keys("r")
    tmux.wait_for(lambda s: s.splitlines()[23].startswith("restart worker? (y/n)"), "the question")
    tmux.keys("n")
    tmux.wait_for(lambda s: "restart worker: cancelled" in s, "the cancellation")
    time.sleep(1.0)  # room for a restart that should not happen
    assert listing(ctl)["worker#0"]["pid"] == before["worker#0"]["pid"]
    assert not master.events("worker_exited")

    tmux.keys("r")
    tmux.wait_for(lambda s: "restart worker? (y/n)" in s, "the question again")
    tmux.keys("y")
    tmux.wait_for(lambda s: "restart worker: ok" in s, "the restart's result", timeout=30)
    after = listing(ctl)
    assert after["worker#0"]["pid"] != before["worker#0"]["pid"]
    assert after["worker#0"]["restarts"] == before["worker#0"]["restarts"] + 1
    assert after["web#0"]["pid"] == before["web#0"]["pid"]  # the other app untouched
    assert [e["app"] for e in master.events("worker_exited")] == ["worker"]
    tmux.wait_for(
        lambda s: f"pid      {after['worker#0']['pid']} · restarts 1" in s,
        "the new pid in the metadata",
    )


def test_scale_keys_add_and_remove_an_instance(
    run_master: Callable[..., Master], tmp_path: Path, tmux: Tmux
) -> None:
    """`+` then `y` adds an instance of the selected app, `-` then `y` takes it away again."""
    _master, ctl = start(run_master, tmp_path, [{"name": "web", "instances": 2}])
    tmux.start(monit_command(ctl))
    tmux.wait_for(lambda s: "processes (2)" in s, "two processes")
    tmux.keys("+")
    tmux.wait_for(lambda s: "scale web +1? (y/n)" in s, "the question")
    tmux.keys("y")
    tmux.wait_for(lambda s: "scale web +1: ok" in s and "processes (3)" in s, "a third process")
    assert len(listing(ctl)) == 3
    tmux.keys("-")
    tmux.wait_for(lambda s: "scale web -1? (y/n)" in s, "the question")
    tmux.keys("y")
    tmux.wait_for(lambda s: "scale web -1: ok" in s and "processes (2)" in s, "two processes again")
    assert sorted(listing(ctl)) == ["web#0", "web#1"]


def test_resize_small_terminal_and_master_gone(
    run_master: Callable[..., Master], tmp_path: Path, tmux: Tmux
) -> None:
    """Shrinking under 60x16 shows one line, growing back redraws the panes, and a stopped master ends monit with exit 1."""
    master, ctl = start(run_master, tmp_path, [{"name": "web"}])
    tmux.start(monit_command(ctl))
    tmux.wait_for(lambda s: "tick web#0" in s, "monit running")
    tmux.resize(50, 12)
    screen = tmux.wait_for(lambda s: "terminal too small" in s, "the too-small line")
    assert screen.splitlines()[0].startswith("terminal too small (50x12)")
    assert "processes" not in screen
    tmux.resize(200, 50)
    screen = tmux.wait_for(lambda s: "processes (1)" in s and "tick web#0" in s, "the panes again")
    assert len(screen.splitlines()[0]) == 200
    tmux.resize(80, 24)
    tmux.wait_for(lambda s: len(s.splitlines()[0]) == 80 and "processes (1)" in s, "back at 80x24")

    master.signal(15)
    assert master.wait_exit() == 0
    screen = tmux.wait_for(lambda s: "MONIT_EXIT=" in s, "monit to end")
    assert "MONIT_EXIT=1" in screen
    assert "runtime: the runtime is gone: nothing answers on" in screen.replace("\n", "")
    assert "Traceback" not in screen


def test_without_a_terminal_monit_says_so_and_exits_2(tmp_path: Path, tmux: Tmux) -> None:
    """No TTY, or a terminal curses cannot drive (TERM=dumb): one line, exit 2, no traceback."""
    out = subprocess.run(
        [sys.executable, "-m", "runtime", "monit", "--control", str(tmp_path / "none.sock")],
        env=ENV,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 2
    assert (
        out.stderr.decode()
        == "runtime: monit needs a terminal (docker exec -it ...); use list or logs -f\n"
    )
    assert out.stdout == b""

    tmux.start(monit_command(tmp_path / "none.sock", "TERM=dumb"))
    screen = tmux.wait_for(lambda s: "MONIT_EXIT=" in s, "monit to refuse TERM=dumb")
    assert "MONIT_EXIT=2" in screen
    assert "runtime: monit cannot move the cursor on this terminal (TERM='dumb')" in screen


CPU_BURNER = """\
import asyncio, math, time

async def main():  # an asyncio app, so the Python preload reports its loop delay
    phase = 0.0
    while True:
        busy = 0.06 + 0.05 * math.sin(phase); phase += 0.25
        end = time.monotonic() + busy
        while time.monotonic() < end:
            pass
        print(f"handled batch in {busy * 1000:.0f} ms", flush=True)
        await asyncio.sleep(0.25)

asyncio.run(main())
"""
GROWER = """\
import time
hoard = []
while True:
    hoard.append(bytearray(400_000))
    if len(hoard) > 80:
        hoard.clear()
        print("cache flushed", flush=True)
    time.sleep(0.25)
"""


@pytest.mark.skipif(
    not os.environ.get("RUNTIME_MONIT_SCREENSHOT") or not HAVE_CHROMIUM,
    reason="set RUNTIME_MONIT_SCREENSHOT=PATH (and install chromium) to render it",
)
@pytest.mark.timeout(120)
def test_render_monit_screenshot(
    run_master: Callable[..., Master], tmp_path: Path, tmux: Tmux
) -> None:
    """Render monit at 80x24 over a few busy apps after 30 s of history (for docs/monit.png)."""
    apps = [
        {"name": "api", "code": CPU_BURNER, "instances": 2},
        {"name": "cache", "code": GROWER},
        {"name": "jobs"},
    ]
    # a short project directory with a version, so the metadata pane reads like a real app
    project = Path(tempfile.mkdtemp(prefix="shop-", dir="/tmp"))
    try:
        (project / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "2.3.1"\n')
        _master, ctl = start(run_master, project, apps)
        tmux.start(monit_command(ctl))
        tmux.wait_for(lambda s: "handled batch" in s, "the api log")
        time.sleep(30)  # thirty samples of CPU and memory history
        png = capture("t", tmux.base)
    finally:
        shutil.rmtree(project, ignore_errors=True)
    out = Path(os.environ["RUNTIME_MONIT_SCREENSHOT"])
    (out if out.is_absolute() else ROOT / out).write_bytes(png)
    assert png.startswith(b"\x89PNG")


@pytest.mark.skipif(
    not os.environ.get("RUNTIME_LIST_SCREENSHOT") or not HAVE_CHROMIUM,
    reason="set RUNTIME_LIST_SCREENSHOT=PATH (and install chromium) to render it",
)
@pytest.mark.timeout(120)
def test_render_list_screenshot(
    run_master: Callable[..., Master], tmp_path: Path, tmux: Tmux
) -> None:
    """Render `list` on a 120-column terminal over a few busy apps (for docs/list.png)."""
    apps = [
        {"name": "api", "code": CPU_BURNER, "instances": 2, "exec_mode": "cluster"},
        {"name": "cache", "code": GROWER, "watch": True},
        {"name": "jobs"},
    ]
    project = Path(tempfile.mkdtemp(prefix="shop-", dir="/tmp"))
    try:
        (project / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "2.3.1"\n')
        _master, ctl = start(run_master, project, apps)
        time.sleep(5)  # a few CPU samples
        command = shlex.join(
            ["env", "-u", "COLUMNS", "-u", "LINES", f"PYTHONPATH={ROOT}", sys.executable, "-m", "runtime", "list",
             "--control", str(ctl)]
        )  # fmt: skip
        tmux.start(f"{command}; sleep 60", width=120, height=12)
        tmux.wait_for(lambda s: "└" in s, "the table")
        png = capture("t", tmux.base, trim=True)
    finally:
        shutil.rmtree(project, ignore_errors=True)
    out = Path(os.environ["RUNTIME_LIST_SCREENSHOT"])
    (out if out.is_absolute() else ROOT / out).write_bytes(png)
    assert png.startswith(b"\x89PNG")

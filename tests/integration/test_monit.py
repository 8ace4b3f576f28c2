"""`python -m runtime monit` in a real terminal (tmux) against a real master."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, Master, py, write_ecosystem

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"
)

TICKER = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.3)"
ROW = re.compile(r"^(\d+)\s+(\S+)\s+(\d+)\s+(\d+|-)\s+(\S+(?: restart)?)\s+(\d+)\s")


class Tmux:
    """A private tmux server (its own socket) running one command in a fixed-size pane."""

    def __init__(self, socket_path: Path) -> None:
        self.base = ["tmux", "-S", str(socket_path)]

    def start(self, command: str) -> None:
        subprocess.run(
            [*self.base, "new-session", "-d", "-s", "t", "-x", "140", "-y", "40", command],
            check=True,
            timeout=10,
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


def rows(screen: str) -> dict[str, tuple[str, str, str, int]]:
    """`id -> (name, pid, status, restarts)` of the process table on the screen."""
    found = {}
    for line in screen.splitlines():
        m = ROW.match(line.strip())
        if m:
            found[m[1]] = (m[2], m[4], m[5], int(m[6]))
    return found


def test_monit_shows_every_worker_and_follows_a_restart(
    run_master: Callable[..., Master], tmp_path: Path, tmux: Tmux
) -> None:
    """monit lists every worker with its pid, tails the selected app's log, and updates after a restart."""
    apps = [
        {"name": "web", **py(TICKER), "instances": 2},
        {"name": "worker", **py(TICKER)},
    ]
    eco = write_ecosystem(tmp_path / "eco.json", apps)
    ctl = tmp_path / "ctl.sock"
    master = run_master(str(eco), "--control", str(ctl))
    started = master.wait_event("worker_started", count=3)
    pids = {str(r["pid"]) for r in started}
    monit = shlex.join([sys.executable, "-m", "runtime", "monit", "--control", str(ctl)])
    tmux.start(f"env PYTHONPATH={shlex.quote(str(ROOT))} {monit}; echo MONIT_EXIT=$?; sleep 60")

    screen = tmux.wait_for(
        lambda s: {p for _, p, _, _ in rows(s).values()} == pids and "web#0" in s,
        "every worker's pid and the web log tail",
    )
    assert sorted(name for name, *_ in rows(screen).values()) == ["web", "web", "worker"]

    tmux.keys("Down", "Down")  # select the third row: the log tail follows `worker`
    tmux.wait_for(lambda s: "logs: worker" in s and "worker#0" in s, "the worker log tail")

    subprocess.run(
        [sys.executable, "-m", "runtime", "restart", "web", "--control", str(ctl)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        check=True,
        timeout=30,
    )
    screen = tmux.wait_for(
        lambda s: [r[3] for r in rows(s).values() if r[0] == "web"] == [1, 1],
        "both web rows at one restart",
    )
    new_web = {pid for name, pid, _, _ in rows(screen).values() if name == "web"}
    assert not new_web & pids

    tmux.keys("q")
    screen = tmux.wait_for(lambda s: "MONIT_EXIT=0" in s, "monit to quit with 0")
    assert "runtime monit" not in screen  # the alternate screen is gone: terminal restored

"""The developer loop on a real master: file changes and cron expressions restart workers."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Master, py, write_ecosystem

# Prints its pid, then stays up until stopped.
SERVE = "import os, time; print('up', os.getpid(), flush=True); time.sleep(3600)"


@pytest.fixture
def start(
    tmp_path: Path, run_master: Callable[..., Master]
) -> Callable[[list[dict[str, Any]]], Master]:
    """Write an ecosystem into tmp_path and run a master on it."""

    def go(apps: list[dict[str, Any]]) -> Master:
        write_ecosystem(tmp_path / "eco.json", apps)
        return run_master("eco.json", "--control", str(tmp_path / "ctl.sock"))

    return go


def _pids(master: Master, app: str) -> list[int]:
    return [r["pid"] for r in master.events("worker_started", app=app)]


def _watched(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "app.py").write_text("v = 0\n")
    return {**py(SERVE), "name": "dev", "watch": ["src"], **extra}


def test_editing_a_watched_file_restarts_the_worker(tmp_path: Path, start: Any) -> None:
    """Saving a file under a watched path replaces the worker with a new pid."""
    master = start([_watched(tmp_path)])
    master.wait_event("watch_started", app="dev")
    first = master.wait_event("worker_started", app="dev")[0]["pid"]
    master.wait_for(lambda: master.lines("dev"), 5, "the first worker's output")
    (tmp_path / "src" / "app.py").write_text("v = 1\n")
    event = master.wait_event("watch_restart", app="dev", timeout=5)[0]
    assert event["paths"] == ["src/app.py"]
    master.wait_event("worker_started", count=2, app="dev", timeout=5)
    second = _pids(master, "dev")[1]
    assert second != first
    master.wait_for(
        lambda: any(r.get("pid") == second for r in master.lines("dev")), 5, "new output"
    )


def test_ignored_paths_do_not_restart(tmp_path: Path, start: Any) -> None:
    """Writes to node_modules, *.pyc, editor swap files or ignore_watch paths are silent."""
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "logs").mkdir()
    master = start([{**py(SERVE), "name": "dev", "watch": True, "ignore_watch": ["logs"]}])
    master.wait_event("watch_started", app="dev")
    master.wait_event("worker_started", app="dev")
    (tmp_path / "node_modules" / "x.js").write_text("module.exports = 1\n")
    (tmp_path / "x.pyc").write_bytes(b"\0")
    (tmp_path / ".eco.json.swp").write_text("")
    (tmp_path / "logs" / "out.log").write_text("line\n")
    time.sleep(0.6)  # several quiet periods: a restart would have begun by now
    assert master.events("watch_restart") == []
    (tmp_path / "real.py").write_text("x = 1\n")  # the watcher was alive all along
    event = master.wait_event("watch_restart", app="dev", timeout=5)[0]
    assert event["paths"] == ["real.py"]
    assert len(_pids(master, "dev")) <= 2


def test_a_burst_of_saves_restarts_once(tmp_path: Path, start: Any) -> None:
    """Twenty saves within about 100 ms (watch_delay 1 s, so a loaded machine that stretches
    the burst still sees one) give exactly one restart."""
    master = start([_watched(tmp_path, watch_delay=1000)])
    master.wait_event("watch_started", app="dev")
    master.wait_event("worker_started", app="dev")
    target = tmp_path / "src" / "app.py"
    for i in range(20):
        target.write_text(f"v = {i}\n")
        time.sleep(0.005)
    master.wait_event("worker_started", count=2, app="dev", timeout=5)
    time.sleep(1.5)  # long enough for a second restart to show up, were there one
    assert len(master.events("watch_restart")) == 1
    assert len(_pids(master, "dev")) == 2


def test_change_during_crash_loop_backoff_restarts_at_once(tmp_path: Path, start: Any) -> None:
    """A crash-looping app waiting out a one-minute delay restarts as soon as a file changes."""
    crash = "import os; print('crash', os.getpid(), flush=True); raise SystemExit(3)"
    (tmp_path / "src").mkdir()
    app = {**py(crash), "name": "dev", "watch": ["src"], "restart_delay": 60_000}
    master = start([app])
    master.wait_event("watch_started", app="dev")
    master.wait_event("restart_scheduled", app="dev", timeout=5)
    assert master.events("restart_scheduled", app="dev")[0]["delay_ms"] >= 60_000
    (tmp_path / "src" / "fix.py").write_text("fixed = True\n")
    master.wait_event("worker_started", count=2, app="dev", timeout=5)
    assert master.events("watch_restart", app="dev")[0]["paths"] == ["src/fix.py"]


def test_cron_expression_restarts_on_schedule(tmp_path: Path, start: Any) -> None:
    """A seconds-resolution cron_restart logs its schedule and restarts the worker each time."""
    master = start([{**py(SERVE), "name": "job", "cron_restart": "*/2 * * * * *"}])
    scheduled = master.wait_event("cron_scheduled", app="job")[0]
    assert scheduled["next_run"].endswith("Z")
    fired = master.wait_event("cron_restart", count=2, app="job", timeout=8)
    assert fired[0]["scheduled"] == scheduled["next_run"]
    master.wait_event("worker_started", count=3, app="job", timeout=5)
    assert len(set(_pids(master, "job"))) >= 3
    assert master.events("restart_requested", app="job")[0]["reason"] == "cron"

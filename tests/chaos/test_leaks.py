"""Churn leaves nothing behind (#13, "Prove it"): 1,000 crash cycles and 200 reloads, with
the master's open fds, threads and RSS flat.

Each resource is read at a quiet moment (no worker starting or stopping), after a
warm-up and again at the end. Tolerances: fds equal, threads equal, RSS within
RSS_SLACK_BYTES of the warm-up reading (allocator noise and the log ring filling).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.load import children
from tests.integration.conftest import free_port, write_ecosystem

CRASH_CYCLES = 1000
WARMUP_CYCLES = 100
RELOADS = 200
WARMUP_RELOADS = 20
RSS_SLACK_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class Usage:
    """What the master holds: open fds, threads, resident memory."""

    fds: int
    threads: int
    rss_bytes: int


def usage(pid: int) -> Usage:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return Usage(
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(status["Threads"]),
        rss_bytes=int(status["VmRSS"].split()[0]) * 1024,
    )


def quiet_usage(pid: int, settle_s: float = 0.3) -> Usage:
    """The master's usage once it has not changed for `settle_s` (nothing in flight)."""
    last = usage(pid)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        time.sleep(settle_s)
        now = usage(pid)
        if (now.fds, now.threads) == (last.fds, last.threads):
            return now
        last = now
    return last


def assert_flat(warm: Usage, end: Usage) -> None:
    assert end.fds == warm.fds, (warm, end)
    assert end.threads == warm.threads, (warm, end)
    assert end.rss_bytes - warm.rss_bytes <= RSS_SLACK_BYTES, (warm, end)


def test_crash_cycles_leak_nothing(tmp_path: Path, run_master: Any) -> None:
    """1,000 restarts of a worker that exits at once leave the master's fds, threads and
    RSS where they were after 100."""
    hold = tmp_path / "hold"  # while it exists the worker stays up: a quiet moment
    script = f"[ -e {hold} ] && exec sleep 600; exit 3"
    crash = {
        "name": "crash",
        "script": "/bin/sh",
        "args": ["-c", script],
        "interpreter": "none",
        "restart_delay": 0,
        "max_restarts": 0,
    }
    m = run_master(str(write_ecosystem(tmp_path / "eco.json", [crash])))

    def pause_at(cycles: int) -> Usage:
        m.wait_event("worker_exited", count=cycles, timeout=50)
        # The worker that is up when the file appears may have looked before it did and
        # still exit, so the held one is the one that reports ready (min_uptime, 1 s): a
        # crashing worker exits within milliseconds and never does.
        readies = len(m.events("worker_ready"))
        hold.touch()
        m.wait_for(lambda: len(m.events("worker_ready")) > readies, 10, "a held worker")
        sleeper = m.events("worker_ready")[-1]["pid"]
        m.wait_for(lambda: sleeper in children(m.pid), 10, "the held worker running")
        taken = quiet_usage(m.pid)
        hold.unlink()
        os.kill(sleeper, signal.SIGKILL)
        return taken

    warm = pause_at(WARMUP_CYCLES)
    end = pause_at(CRASH_CYCLES)
    print(f"\nleaks crash_cycles={len(m.events('worker_exited'))} warm={warm} end={end}")
    assert_flat(warm, end)
    assert m.proc.poll() is None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sharing", ["reuseport", "shared"])
def test_reloads_leak_nothing(tmp_path: Path, run_master: Any, sharing: str) -> None:
    """200 rolling reloads (SIGHUP) of a 2-instance cluster app leave the master's fds,
    threads and RSS where they were after 20 (reuseport: two sockets opened and closed
    per reload)."""
    port = free_port()
    app = {
        "name": "web",
        "script": "/bin/sleep",
        "args": ["600"],
        "interpreter": "none",
        "exec_mode": "cluster",
        "instances": 2,
        "listen": [f"127.0.0.1:{port}"],
        "socket_sharing": sharing,
        "min_uptime": 0,  # ready as soon as it runs: the reloads, not the app, take the time
    }
    m = run_master(str(write_ecosystem(tmp_path / "eco.json", [app])))
    m.wait_event("worker_ready", count=2)
    warm = None
    started = time.monotonic()
    for n in range(1, RELOADS + 1):
        m.signal(signal.SIGHUP)
        m.wait_event("reload_done", count=n, timeout=20)
        if n == WARMUP_RELOADS:
            warm = quiet_usage(m.pid)
    end = quiet_usage(m.pid)
    took = time.monotonic() - started
    print(f"\nleaks sharing={sharing} reloads={RELOADS} in {took:.1f}s warm={warm} end={end}")
    assert warm is not None
    assert_flat(warm, end)
    assert m.events("reload_failed") == []
    assert len(children(m.pid)) == 2

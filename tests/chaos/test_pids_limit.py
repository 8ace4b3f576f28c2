"""Fork failure under a pids limit, and recovery once it is lifted (#13, "Prove it").

The master is moved into a cgroup of its own whose `pids.max` is what it has now, so
respawning a killed worker fails with EAGAIN: `spawn_failed`, retried with a backoff, no
traceback, control still answering. Raising the limit brings the worker back. Uses the
cgroup v2 `pids` controller when a writable cgroup2 hierarchy offers it, else the v1
`pids` hierarchy; skips (saying why) when neither can be used here.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.probes import ping
from tests.integration.conftest import write_ecosystem

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _v2_root() -> Path | None:
    """A cgroup2 directory (ours) where a child cgroup can have the pids controller."""
    for mount in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
        controllers = mount / "cgroup.controllers"
        if controllers.exists() and "pids" in controllers.read_text().split():
            return mount
    return None


def _make_cgroup() -> tuple[Path, str]:
    """A new pids-limited cgroup: (its directory, 'v2' or 'v1'); pytest.skip if none."""
    name = f"runtime-chaos-{uuid.uuid4().hex[:8]}"
    reasons = []
    v2 = _v2_root()
    if v2 is not None:
        try:
            with contextlib.suppress(OSError):  # already on, or not ours to change
                (v2 / "cgroup.subtree_control").write_text("+pids")
            path = v2 / name
            path.mkdir()
            if (path / "pids.max").exists():
                return path, "v2"
            path.rmdir()
            reasons.append(f"{v2}: the pids controller is not enabled for children")
        except OSError as exc:
            reasons.append(f"{v2}: {exc}")
    else:
        reasons.append("no cgroup2 hierarchy offers the pids controller")
    v1 = CGROUP_ROOT / "pids"
    if (v1 / "cgroup.procs").exists():
        try:
            path = v1 / name
            path.mkdir()
            return path, "v1"
        except OSError as exc:
            reasons.append(f"{v1}: {exc}")
    else:
        reasons.append(f"no cgroup v1 pids hierarchy at {v1}")
    pytest.skip("cannot create a pids-limited cgroup here: " + "; ".join(reasons))


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A fresh pids cgroup, removed at the end (after its processes are gone)."""
    path, _version = _make_cgroup()
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            (path / "pids.max").write_text("max")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def test_fork_failure_under_a_pids_limit_recovers(
    tmp_path: Path, run_master: Any, pids_cgroup: Path
) -> None:
    """A worker killed while the master may not fork: `spawn_failed` with a retry, control
    still answers; the limit raised, the worker comes back. No traceback."""
    control = tmp_path / "c.sock"
    app = {"name": "s", "script": "/bin/sleep", "args": ["600"], "interpreter": "none"}
    eco = write_ecosystem(tmp_path / "eco.json", [app])
    m = run_master(str(eco), "--control", str(control))
    first = m.wait_event("worker_ready")[0]["pid"]
    (pids_cgroup / "cgroup.procs").write_text(str(m.pid))
    current = int((pids_cgroup / "pids.current").read_text())
    (pids_cgroup / "pids.max").write_text(str(current))
    os.kill(first, signal.SIGKILL)
    failed = m.wait_event("spawn_failed", count=2, timeout=20)
    assert failed[0]["level"] == "error"
    assert failed[0]["retry_ms"] > 0
    assert failed[1]["retry_ms"] >= failed[0]["retry_ms"]
    assert ping(control)
    started = len(m.events("worker_started"))
    (pids_cgroup / "pids.max").write_text("max")
    m.wait_for(lambda: len(m.events("worker_started")) > started, 20, "a worker started again")
    again = m.wait_event("worker_ready", count=2, timeout=20)[-1]["pid"]
    assert again != first
    assert Path(f"/proc/{again}").exists()
    m.signal(signal.SIGTERM)
    assert m.wait_exit(20) == 0
    assert "Traceback" not in m.stderr()
    assert all("unparsed" not in r for r in m.records)

"""The master's event loop: uvloop by default, the standard asyncio loop with RUNTIME_LOOP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, py, write_ecosystem

CRASHER = py(
    "import os, time; print('up', os.getpid(), flush=True); time.sleep(0.3); raise SystemExit(3)"
)


def mapped_files(pid: int) -> str:
    """Every file mapped into `pid`'s memory (shared libraries and extension modules)."""
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize(("loop", "uvloop_mapped"), [("", True), ("asyncio", False)])
def test_each_loop_supervises(tmp_path: Path, run_master, loop: str, uvloop_mapped: bool) -> None:
    """The default (uvloop) and the asyncio opt-out run the same supervisor: a crash respawns,
    TERM stops with exit 0."""
    eco = write_ecosystem(tmp_path / "eco.json", [{**CRASHER, "name": "c", "restart_delay": 0}])
    master = run_master(str(eco), env={"RUNTIME_LOOP": loop})
    master.wait_event("worker_exited", app="c")
    master.wait_event("worker_started", count=2, app="c")
    assert ("uvloop" in mapped_files(master.pid)) is uvloop_mapped
    master.signal(signal.SIGTERM)
    assert master.wait_exit() == 0


def test_unknown_loop_is_a_usage_error(tmp_path: Path) -> None:
    """A bad RUNTIME_LOOP is refused with one line and exit 2, before any worker starts."""
    marker = tmp_path / "started"
    app = py(f"open({str(marker)!r}, 'w').close()")
    eco = write_ecosystem(tmp_path / "eco.json", [{**app, "name": "a"}])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNTIME_LOOP": "trio"}
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", str(eco)],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "runtime: RUNTIME_LOOP must be one of uvloop, asyncio, got 'trio'"
    ]
    assert not marker.exists()

"""A `watch:` app whose tree holds the runtime's own log file does not restart for it (#13, 11)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.conftest import ROOT, py, write_ecosystem

SERVE = "import os, time; print('up', os.getpid(), flush=True); time.sleep(3600)"


def records(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def count(path: Path, event: str) -> int:
    return sum(1 for r in records(path) if r.get("event") == event)


def wait_count(path: Path, event: str, n: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while count(path, event) < n:
        assert time.monotonic() < deadline, f"waited for {n} x {event}"
        time.sleep(0.05)


def test_the_runtimes_own_stdout_file_in_the_watched_tree_is_ignored(tmp_path: Path) -> None:
    """stdout and stderr redirected into the watched directory: no restart loop, while an
    edit of a real file still restarts the app once."""
    write_ecosystem(tmp_path / "eco.json", [{**py(SERVE), "name": "dev", "watch": ["."]}])
    log, errors = tmp_path / "runtime.log", tmp_path / "logs" / "runtime.err"
    errors.parent.mkdir()
    with log.open("wb") as out, errors.open("wb") as err:
        master = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "runtime",
                "eco.json",
                "--log-format",
                "json",
                "--control",
                str(tmp_path / "c.sock"),
            ],
            cwd=tmp_path,
            stdout=out,
            stderr=err,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
        )
    try:
        wait_count(log, "watch_started", 1)
        wait_count(log, "worker_ready", 1)
        time.sleep(2.0)  # a loop restarts within a few hundred ms of each log line
        assert count(log, "watch_restart") == 0, [
            r.get("paths") for r in records(log) if r.get("event") == "watch_restart"
        ]
        (tmp_path / "app.py").write_text("v = 1\n")
        wait_count(log, "watch_restart", 1)
        time.sleep(1.5)
        assert count(log, "watch_restart") == 1
    finally:
        master.send_signal(signal.SIGTERM)
        assert master.wait(15) == 0

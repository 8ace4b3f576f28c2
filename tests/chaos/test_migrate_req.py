"""`net.ipv4.tcp_migrate_req=1`: what was queued on a dead worker's reuseport socket is
served by the other workers at once, instead of waiting for the slot's next worker.

Each run is tests/chaos/migrate_scenario.py in a network namespace of its own
(`unshare --net`), where the sysctl is set without touching the host's: root only.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a network namespace",
)


def scenario(migrate: str) -> dict[str, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        ["unshare", "--net", sys.executable, "-m", "tests.chaos.migrate_scenario", migrate],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=40,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["stuck"] >= 1, result  # some connections were queued on instance 0
    return result


def test_queued_connections_move_to_the_live_worker_with_migrate_req() -> None:
    """With the sysctl on, every connection stuck on the killed worker's socket is answered
    by the other worker within 2 s (its slot's next worker is 30 s away)."""
    result = scenario("1")
    assert result["answered_after_kill"] == result["stuck"], result


def test_without_migrate_req_they_wait_for_the_slot() -> None:
    """The control: with the sysctl off they stay queued for the slot's next worker (the
    socket is kept, so none is reset), and none is answered in those 2 s."""
    result = scenario("0")
    assert result["answered_after_kill"] == 0, result

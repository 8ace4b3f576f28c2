"""bench/swarm.py, short, as an opt-in end-to-end test on a real single-node Docker Swarm.

Opt-in (`RUNTIME_SWARM=1`, and a Docker daemon that answers) because it builds images,
may turn the daemon into a swarm for a minute, and takes a couple of minutes. One run of
the scenario (2 replicas, one rolling update, one `docker kill`) under load from a client
container is shared by the first three tests; the last one interrupts a run with SIGINT
and checks the teardown still happens.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from tests.integration.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

BENCH = ROOT / "bench" / "swarm.py"
RUN_LIMIT_S = 600.0  # the whole short scenario, image build included
LABEL = "runtime.bench.run"
GWBRIDGE = "docker_gwbridge"


def docker(*args: str, timeout: float = 30) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    return done.stdout if done.returncode == 0 else ""


def skip_reason() -> str | None:
    """Why this module cannot run here, or None."""
    if os.environ.get("RUNTIME_SWARM") != "1":
        return "opt-in: set RUNTIME_SWARM=1 (builds images, runs a Docker Swarm service)"
    if shutil.which("docker") is None:
        return "no docker client"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=5)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    return None if info.returncode == 0 else "no Docker daemon answers"


@pytest.fixture(scope="module", autouse=True)
def _opt_in() -> None:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)


def daemon_state() -> tuple[str, bool]:
    """(swarm state of this daemon, whether docker_gwbridge exists)."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    return state, bool(docker("network", "ls", "-q", "--filter", f"name=^{GWBRIDGE}$").strip())


def leftovers(run_id: str, before: tuple[str, bool]) -> list[str]:
    """Whatever a run with this id left: services, networks, containers, a swarm, a bridge."""
    label = f"label={LABEL}={run_id}"
    found = [f"network {n}" for n in docker("network", "ls", "-q", "--filter", label).split()]
    found += [f"container {c}" for c in docker("ps", "-aq", "--filter", label).split()]
    state, bridge = daemon_state()
    if state == "active":
        found += [f"service {s}" for s in docker("service", "ls", "-q", "--filter", label).split()]
    if (state, bridge) != before:
        found.append(f"daemon was {before}, is {(state, bridge)}")
    return found


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short run of the scenario; its JSON summary, plus the daemon's state before it."""
    before = daemon_state()
    out = tmp_path_factory.mktemp("swarm") / "swarm.json"
    run_id = uuid.uuid4().hex[:6]
    argv = ["--replicas", "2", "--rounds", "1", "--scenarios", "update,kill"]
    argv += ["--run-id", run_id, "--json", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCH), *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_LIMIT_S,
    )
    assert out.exists(), done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(out.read_text())
    summary["before"], summary["returncode"], summary["stderr"] = (
        before,
        done.returncode,
        done.stderr,
    )
    return summary


def scenario(summary: dict[str, Any], name: str) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [r for r in summary["results"] if r["scenario"] == name]
    assert len(rows) == 1, (summary["error"], summary["stderr"][-3000:])
    return rows[0]


def test_rolling_update_fails_no_request(short_run: dict[str, Any]) -> None:
    """A start-first, health-gated rolling update under load fails 0 requests."""
    update = scenario(short_run, "update")
    assert update["update_state"] == "completed"
    assert update["ok"] > 100
    assert update["failed"] == 0, update["failures"]
    new = [row for row in update["timeline"] if row.get("healthy")]
    assert len(new) == 2  # both replicas were replaced


def test_killed_replica_comes_back(short_run: dict[str, Any]) -> None:
    """After `docker kill` of one replica, a new task in its slot runs and is healthy."""
    kill = scenario(short_run, "kill")
    assert kill["replaced_by"], kill["timeline"]
    assert kill["replaced_by"][0].rsplit(".", 1)[0] == kill["killed"].rsplit(".", 1)[0]
    assert kill["whole_s"] < 60
    assert kill["ok"] > 100


def test_nothing_left_behind(short_run: dict[str, Any]) -> None:
    """The run removes its service, network and client containers, and a swarm it made."""
    assert short_run["returncode"] == 0, short_run["stderr"][-3000:]
    assert short_run["teardown_errors"] == []
    assert short_run["leftovers"] == []
    assert leftovers(short_run["run_id"], short_run["before"]) == []


def test_interrupt_tears_down() -> None:
    """SIGINT in the middle of a run still removes everything the run created."""
    before = daemon_state()
    run_id = uuid.uuid4().hex[:6]
    argv = ["--replicas", "1", "--rounds", "5", "--scenarios", "update", "--run-id", run_id]
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), *argv],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + RUN_LIMIT_S
        while not docker("ps", "-q", "--filter", f"label={LABEL}={run_id}").strip():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no container of the run appeared"
            time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1  # stopped early is not a success
    assert "KeyboardInterrupt" in stderr
    assert "tearing down" in stderr
    assert leftovers(run_id, before) == []
